"""The book's repository, issue and launch (Binder, Colab) buttons point at the checkout's own git remote, or are
left out (a local Sphinx extension, see _config.yml).

``_config.yml`` leaves ``repository.url`` empty and names the launch services (``launch_buttons``). At build
time, this extension reads
``git remote get-url origin`` in the book's folder, turns it into the repository's https address
(``git@github.com:owner/name.git`` -> ``https://github.com/owner/name``; user names, passwords and ``.git``
dropped) and gives it to the theme as ``repository_url``, with the remote's default branch where git knows it.
With no such address (no remote, a remote that is a local folder, a host the theme cannot link to) the
repository, issue and launch buttons are left out, so that no button leads to a dead page; the .ipynb download
button needs no address and stays. A ``repository.url`` set in ``_config.yml`` wins over the remote.

Issues buttons exist for GitHub and GitLab, Colab opens notebooks from GitHub only: each button appears only where
its link can work.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

PROVIDERS = ("github", "gitlab", "bitbucket")  # the hosts sphinx-book-theme builds links for
_SCP_LIKE = re.compile(r"^(?:[\w.+-]+@)?(?P<host>[\w.-]+\.[A-Za-z]{2,}):(?!//)(?P<path>[^\\]+)$")  # git@host:o/r


def https_address(remote: str | None) -> str | None:
    """The https address of a repository from a git remote URL, or None if the remote is not on a web host.

    >>> https_address("git@github.com:owner/name.git")
    'https://github.com/owner/name'
    """
    remote = (remote or "").strip()
    found = _SCP_LIKE.match(remote)
    if found:
        host, path, port = found["host"], found["path"], None
    else:
        parts = urlsplit(remote)
        if parts.scheme not in ("https", "http", "ssh", "git", "git+ssh") or not parts.hostname:
            return None  # a local folder, file://, or not a URL
        host, path = parts.hostname, parts.path
        port = parts.port if parts.scheme in ("https", "http") else None  # an ssh port is not the web's
    if "." not in host or host == "localhost":
        return None
    path = re.sub(r"\.git$", "", path.strip("/")).strip("/")
    if len([p for p in path.split("/") if p]) < 2:  # owner/name at least
        return None
    return f"https://{host}{f':{port}' if port else ''}/{path}"


def provider(address: str | None) -> str | None:
    """github, gitlab or bitbucket (as sphinx-book-theme infers it from the address), or None."""
    host = (urlsplit(address).hostname or "") if address else ""
    return next((p for p in PROVIDERS if p in host), None)


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):  # no git
        return None
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None


def repository(folder: Path) -> tuple[str | None, str | None]:
    """(address, default branch) of ``folder``'s ``origin`` remote; None where there is none or git cannot say."""
    address = https_address(_git(folder, "remote", "get-url", "origin"))
    if address is None or provider(address) is None:
        return None, None
    head = _git(folder, "symbolic-ref", "--short", "refs/remotes/origin/HEAD")  # origin/main, if git knows it
    return address, head.split("/", 1)[1] if head and "/" in head else None


def book_repository(folder: Path, configured: str | None = None) -> tuple[str | None, str | None]:
    """(address, branch) that the buttons use: ``configured`` (``repository.url``) if set, else the remote's."""
    if configured:
        return (configured, None) if provider(configured) else (None, None)
    return repository(folder)


def configure(options: dict, address: str | None, branch: str | None = None) -> dict:
    """The theme options with the repository buttons set for ``address``, or without them if it is None."""
    options = dict(options)
    launch = dict(options.get("launch_buttons") or {})
    kind = provider(address)
    if kind is None:
        options["repository_url"] = ""
        options["use_repository_button"] = options["use_issues_button"] = options["use_edit_page_button"] = False
        options["use_source_button"] = False
        for key in ("binderhub_url", "jupyterhub_url", "colab_url", "deepnote_url", "jupyterlite_url"):
            launch[key] = ""
        launch["thebe"] = False
    else:
        options["repository_url"] = address
        if branch:
            options["repository_branch"] = branch
        options["use_repository_button"] = True
        options["use_issues_button"] = kind in ("github", "gitlab")
        if kind != "github":
            launch["colab_url"] = ""
    options["launch_buttons"] = launch
    return options


def _on_config_inited(app, config):
    options = config.html_theme_options
    address, branch = book_repository(Path(app.srcdir), options.get("repository_url"))
    config.html_theme_options = configure(options, address, branch)


def setup(app):
    app.connect("config-inited", _on_config_inited, priority=100)  # before the theme reads its options
    return {"parallel_read_safe": True, "parallel_write_safe": True}
