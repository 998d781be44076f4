"""_ext/book_repository.py: the book's repository and launch buttons come from the checkout's git remote, or are
left out. (The built pages themselves are checked by tests/book_in_browser.py.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "_ext"))
import book_repository as br  # noqa: E402 (a local Sphinx extension, outside src/)


@pytest.mark.parametrize(
    "remote, address",
    [
        ("git@github.com:owner/name.git", "https://github.com/owner/name"),
        ("github.com:owner/name", "https://github.com/owner/name"),
        ("https://github.com/owner/name.git", "https://github.com/owner/name"),
        ("https://github.com/owner/name/", "https://github.com/owner/name"),
        ("http://github.com/owner/name", "https://github.com/owner/name"),
        ("https://user:secret-token@github.com/owner/name.git", "https://github.com/owner/name"),  # never a token
        ("ssh://git@github.com:22/owner/name.git", "https://github.com/owner/name"),  # the ssh port is not the web's
        ("git+ssh://git@gitlab.com/group/sub/name.git", "https://gitlab.com/group/sub/name"),
        ("git://github.com/owner/name.git", "https://github.com/owner/name"),
        ("https://git.example.org:8443/owner/name", "https://git.example.org:8443/owner/name"),
        ("  git@bitbucket.org:owner/name.git\n", "https://bitbucket.org/owner/name"),
        # not on a web host: no address
        ("/work/main", None),
        ("../other-checkout", None),
        ("file:///srv/git/name.git", None),
        ("C:\\repos\\name", None),
        ("https://github.com/owner", None),  # no repository name
        ("ssh://localhost/srv/name.git", None),
        ("", None),
        (None, None),
    ],
)
def test_https_address(remote, address):
    assert br.https_address(remote) == address


def test_provider():
    assert br.provider("https://github.com/o/r") == "github"
    assert br.provider("https://gitlab.example.org/o/r") == "gitlab"
    assert br.provider("https://bitbucket.org/o/r") == "bitbucket"
    assert br.provider("https://codeberg.org/o/r") is None
    assert br.provider(None) is None


def _git(folder: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True)


@pytest.fixture
def checkout(tmp_path):
    _git(tmp_path, "init", "-q")
    return tmp_path


def test_repository_from_the_remote(checkout):
    assert br.repository(checkout) == (None, None)  # no remote
    _git(checkout, "remote", "add", "origin", "git@github.com:owner/name.git")
    assert br.repository(checkout) == ("https://github.com/owner/name", None)
    _git(checkout, "symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/trunk")  # as a clone sets it
    assert br.repository(checkout) == ("https://github.com/owner/name", "trunk")


@pytest.mark.parametrize("remote", ["/somewhere/else", "https://codeberg.org/owner/name"])
def test_no_address_for_a_local_or_unknown_remote(checkout, remote):
    _git(checkout, "remote", "add", "origin", remote)
    assert br.repository(checkout) == (None, None)


def test_not_a_checkout(tmp_path):
    assert br.repository(tmp_path / "plain") == (None, None)


def test_configured_address_wins(checkout):
    _git(checkout, "remote", "add", "origin", "git@github.com:owner/name.git")
    assert br.book_repository(checkout, "https://gitlab.com/g/n") == ("https://gitlab.com/g/n", None)
    assert br.book_repository(checkout, "") == ("https://github.com/owner/name", None)
    assert br.book_repository(checkout, "https://codeberg.org/o/n") == (None, None)


WANTED = {
    "repository_url": "",
    "repository_branch": "main",
    "use_repository_button": False,
    "use_issues_button": False,
    "launch_buttons": {"notebook_interface": "jupyterlab", "binderhub_url": "https://mybinder.org",
                       "colab_url": "https://colab.research.google.com", "thebe": False},
}  # fmt: skip


def test_no_address_no_buttons():
    options = br.configure(WANTED, None)
    assert options["repository_url"] == ""
    assert not any(options[k] for k in ("use_repository_button", "use_issues_button", "use_edit_page_button"))
    launch = options["launch_buttons"]
    assert not any(launch[k] for k in ("binderhub_url", "colab_url", "jupyterhub_url", "thebe"))
    assert launch["notebook_interface"] == "jupyterlab"
    assert WANTED["launch_buttons"]["binderhub_url"] == "https://mybinder.org"  # the input is left alone


def test_github_gets_every_button():
    options = br.configure(WANTED, "https://github.com/o/r", "trunk")
    assert options["repository_url"] == "https://github.com/o/r" and options["repository_branch"] == "trunk"
    assert options["use_repository_button"] and options["use_issues_button"]
    assert options["launch_buttons"]["binderhub_url"] == "https://mybinder.org"
    assert options["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert br.configure(WANTED, "https://github.com/o/r")["repository_branch"] == "main"  # branch unknown: kept


def test_each_button_only_where_its_link_works():
    gitlab = br.configure(WANTED, "https://gitlab.com/g/r")
    assert gitlab["use_issues_button"] and gitlab["launch_buttons"]["colab_url"] == ""  # Colab reads GitHub only
    assert gitlab["launch_buttons"]["binderhub_url"]
    bitbucket = br.configure(WANTED, "https://bitbucket.org/o/r")
    assert bitbucket["use_repository_button"] and not bitbucket["use_issues_button"]


def test_the_sphinx_hook_sets_the_theme_options(checkout):
    _git(checkout, "remote", "add", "origin", "https://github.com/owner/name.git")
    config = SimpleNamespace(html_theme_options=dict(WANTED))
    br._on_config_inited(SimpleNamespace(srcdir=str(checkout)), config)
    assert config.html_theme_options["repository_url"] == "https://github.com/owner/name"
    assert config.html_theme_options["use_repository_button"]
    _git(checkout, "remote", "remove", "origin")
    config = SimpleNamespace(html_theme_options=dict(WANTED))
    br._on_config_inited(SimpleNamespace(srcdir=str(checkout)), config)
    assert config.html_theme_options["launch_buttons"]["binderhub_url"] == ""
