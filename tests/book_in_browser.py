"""The built book in a real browser, offline: `make test-browser` (builds the book first, then runs this file).

Serves ``_build/html`` on 127.0.0.1 and opens every page listed in ``_toc.yml`` (so chapters are covered as
they land) in headless Chromium - Debian's ``/usr/bin/chromium``, driven by playwright; no browser is ever
downloaded. Every request that is not for 127.0.0.1 is aborted and recorded, and Chromium's resolver maps every
host name except 127.0.0.1 to nothing, so the pages must work with no network at all. Per page:

- no console error and no uncaught exception (except the ones listed in ``ALLOWED_CONSOLE_ERRORS``, each
  explained), and no request that had to be blocked;
- every ``<img>`` loaded (``naturalWidth > 0``);
- math typeset: every math element holds MathJax output (``mjx-container``) and no MathJax error;
- every animation (convlib.viz's HTML) shows a different frame after its Play button is clicked;
- no saved ipywidgets view (a control that would look live but cannot recompute in a static page);
- the sidebar links to every page of the table of contents;
- a notebook page offers its ``.ipynb`` for download (served, and a notebook);
- the repository, issue and launch (Binder, Colab) buttons point at this checkout's git remote, as
  ``_ext/book_repository.py`` reads it, or are absent where there is none; no link anywhere points at the former
  placeholder address, and without a remote no link at all points at a launch service.

A full-page screenshot of every page is saved under ``_build/screenshots/``.

Last, the live explorer in a real JupyterLab (started on 127.0.0.1 with this checkout's convlib, offline too):
its sliders appear, and moving one recomputes the output size (screenshot ``_build/screenshots/explorer.png``).

Not collected by ``pytest tests/`` (the file name does not start with ``test_``); run it with
``pytest tests/book_in_browser.py`` after ``make book``.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "_ext"))
import book_repository  # noqa: E402 (the local Sphinx extension that sets the buttons)

HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # the CI container runs as root
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # belt and braces with the request interception below: no host name resolves except the local server's
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]

# Console errors a page may log, each with the reason it is harmless. Keep this list empty unless a message is
# understood: every entry is a regular expression matched against the console text.
ALLOWED_CONSOLE_ERRORS: dict[str, str] = {}


def toc_pages() -> list[str]:
    """Every document of ``_toc.yml`` (root, chapters, their sections), in order, without extension."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                pages.append(entry["file"])
            walk(entry.get("sections"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return [re.sub(r"\.(md|ipynb)$", "", p) for p in pages]


PAGES = toc_pages()
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
# The address the buttons must use: the git remote's (or repository.url's), None where there is none.
ADDRESS, _BRANCH = book_repository.book_repository(ROOT, CONFIG["repository"].get("url"))
BRANCH = _BRANCH or CONFIG["repository"].get("branch", "main")
REPO = urlparse(ADDRESS).path.strip("/") if ADDRESS else None  # owner/name
PLACEHOLDER = "conv-as-matmul/conv-as-matmul"  # the address the buttons once used, whose pages do not exist
LAUNCH_HOSTS = {"mybinder.org", "colab.research.google.com"}


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def server():
    if not (HTML / "index.html").exists():
        pytest.fail(f"no built book in {HTML}: run `make book` first (make test-browser does)")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(HTML)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (see .ci/run)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Offline:
    """A browser context in which every request for anything but 127.0.0.1 is aborted and recorded."""

    def __init__(self, browser):
        self.blocked: list[str] = []
        self.context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
        self.context.route("**/*", self._route)

    def _route(self, route):
        url = route.request.url
        if urlparse(url).hostname == "127.0.0.1":
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort("blockedbyclient")


@pytest.fixture
def offline(browser):
    o = Offline(browser)
    yield o
    o.context.close()


def open_page(offline, url):
    page = offline.context.new_page()
    errors = []
    page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
    page.goto(url, wait_until="load")
    page.wait_for_load_state("networkidle")
    return page, errors


def test_the_toc_lists_pages_that_were_built():
    assert len(PAGES) >= 2
    for name in PAGES:
        assert (HTML / f"{name}.html").exists(), f"{name} is in _toc.yml but not in the built book"


def test_requests_off_the_machine_are_blocked(server, offline):
    """The harness itself: a page that asks for a remote resource gets nothing, and the attempt is recorded."""
    page, _ = open_page(offline, f"{server}/index.html")
    status = page.evaluate("""() => fetch('https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js')
                                    .then(r => 'fetched ' + r.status, e => 'blocked')""")
    assert status == "blocked"
    assert any("cdn.jsdelivr.net" in u for u in offline.blocked)


@pytest.mark.parametrize("name", PAGES)
def test_page_works_offline(name, server, offline):
    url = f"{server}/{name}.html"
    page, errors = open_page(offline, url)

    # math: wait until MathJax has replaced every math element's TeX (it is loaded from _static/mathjax)
    n_math = page.locator(".math").count()
    if n_math:
        try:
            page.wait_for_function(
                """() => [...document.querySelectorAll('.math')].every(e => e.querySelector('mjx-container'))""",
                timeout=20000,
            )
        except Exception as err:  # playwright's TimeoutError: say what it means
            pytest.fail(
                f"{name}: math not typeset within 20 s ({n_math} math elements; MathJax must come from "
                f"_static/mathjax; blocked requests: {offline.blocked}): {err}"
            )
        assert page.locator("mjx-merror").count() == 0, f"{name}: MathJax reports a TeX error"
    assert page.locator("mjx-container").count() >= n_math

    # images, including the animations' frames once their script has run
    page.wait_for_function("() => [...document.images].every(i => i.complete)", timeout=10000)
    images = page.evaluate("() => [...document.images].map(i => [i.currentSrc.slice(0, 80), i.naturalWidth])")
    broken = [src for src, width in images if width == 0]
    assert not broken, f"{name}: images that did not load: {broken}"

    # animations: every chapter has at least one, and Play shows another frame
    animations = page.locator("div.animation")
    if name.startswith("chapters/"):
        assert animations.count() >= 1, f"{name}: a chapter without an animation (see convlib.viz)"
    for k in range(animations.count()):
        anim = animations.nth(k)
        anim.scroll_into_view_if_needed()
        img = anim.locator("img")
        before = img.get_attribute("src")
        slider = anim.locator("input.anim-slider")
        assert before and before.startswith("data:image/png"), f"{name}: animation {k} shows no frame"
        anim.locator('button[title="Play"]').click()
        page.wait_for_function("([img, s]) => img.src !== s", arg=[img.element_handle(), before], timeout=5000)
        assert int(slider.input_value()) > 0, f"{name}: animation {k} did not advance"
        anim.locator('button[title="Pause"]').click()

    # no saved widget: in a static page its sliders would move but nothing would recompute
    dead = page.locator('script[type="application/vnd.jupyter.widget-view+json"]').count()
    assert dead == 0, f"{name}: {dead} saved ipywidgets view(s); tag the cell remove-output (see the preface)"

    # the sidebar (the primary one, the table of contents) links to every page of _toc.yml
    hrefs = page.eval_on_selector_all(".bd-sidebar-primary a[href]", "els => els.map(e => e.href)")
    linked = {urlparse(h).path.lstrip("/").removesuffix(".html") for h in hrefs}
    missing = [p for p in PAGES[1:] if p not in linked]  # the root page is the home link ...
    assert not missing, f"{name}: the sidebar does not link to {missing}"
    assert any(
        urlparse(h).path.endswith(f"/{PAGES[0]}.html") or urlparse(h).path in ("/", "/index.html") for h in hrefs
    ), f"{name}: the sidebar has no link to the first page"

    # a notebook page: its .ipynb for download (needs no address)
    links = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
    notebook = (ROOT / f"{name}.ipynb").exists()
    if notebook:
        ipynb = [h for h in links if urlparse(h).path.endswith(f"/_sources/{name}.ipynb")]
        assert ipynb, f"{name}: no .ipynb download link"
        response = page.request.get(ipynb[0])
        assert response.ok and "nbformat" in response.json(), f"{name}: the .ipynb download is not a notebook"
    check_repository_buttons(page, name, links, notebook)

    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name.replace('/', '__')}.png"), full_page=True)

    unexplained = [e for e in errors if not any(re.search(p, e) for p in ALLOWED_CONSOLE_ERRORS)]
    assert not unexplained, f"{name}: console errors: {unexplained}"
    assert not offline.blocked, f"{name}: the page tried to reach the network: {offline.blocked}"
    page.close()


def check_repository_buttons(page, name, links, notebook):
    """The header's links off the machine all lead into this checkout's repository, or there are none."""
    dead = [h for h in links if PLACEHOLDER in h and not (ADDRESS and h.startswith(ADDRESS))]
    assert not dead, f"{name}: links to the placeholder address {PLACEHOLDER}: {dead}"
    header = page.eval_on_selector_all(".bd-header-article a[href]", "els => els.map(e => e.href)")
    remote = [h for h in header if urlparse(h).hostname not in (None, "127.0.0.1")]
    launchers = [h for h in links if urlparse(h).hostname in LAUNCH_HOSTS]
    if ADDRESS is None:  # no remote: no repository, issue or launch button, nor any link to a launch service
        assert not remote, f"{name}: header buttons lead off the machine with no repository to lead to: {remote}"
        assert not launchers, f"{name}: launch links with no repository to launch: {launchers}"
        return
    strays = [h for h in remote if not h.startswith(ADDRESS) and h not in launchers]
    assert not strays, f"{name}: header links outside {ADDRESS}: {strays}"
    assert ADDRESS in header, f"{name}: no repository button for {ADDRESS}"
    assert all(REPO in h or REPO.replace("/", "%2F") in h for h in launchers), f"{name}: launchers {launchers}"
    if notebook and book_repository.provider(ADDRESS) == "github":
        for launcher in (
            f"https://mybinder.org/v2/gh/{REPO}/{BRANCH}?urlpath=lab/tree/{name}.ipynb",
            f"https://colab.research.google.com/github/{REPO}/blob/{BRANCH}/{name}.ipynb",
        ):
            assert launcher in links, f"{name}: no launch button {launcher}"
        assert any(h.startswith(f"{ADDRESS}/issues/new") for h in header), f"{name}: no issues button"


# ---------------------------------------------------------------- the live explorer in JupyterLab


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory):
    """JupyterLab on 127.0.0.1 (no token: it listens on the loopback only, for this test), one notebook."""
    import nbformat

    folder = tmp_path_factory.mktemp("lab")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("import convlib\nconvlib.viz.explorer(H=7, W=7, kernel_size=3, stride=2, padding=1)")
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, folder / "explorer.ipynb")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), JUPYTER_CONFIG_DIR=str(folder / ".jupyter"))
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--allow-root",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.token=",
        "--ServerApp.password=",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        f"--ServerApp.root_dir={folder}",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    pytest.fail("JupyterLab did not start")
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_explorer_recomputes_in_jupyterlab(jupyterlab, offline):
    page = offline.context.new_page()
    page.goto(f"{jupyterlab}/lab/tree/explorer.ipynb")
    page.wait_for_selector(".jp-Notebook .jp-Cell .jp-InputArea-editor", timeout=60000)
    # Run the cell. A Shift+Enter that arrives before the kernel is connected only moves to a new cell (the
    # prompt stays "[ ]:"): then go back and run it again.
    prompt = page.locator(".jp-Cell .jp-InputPrompt").first
    for attempt in range(5):
        page.locator(".jp-Cell .jp-InputArea-editor").first.click()
        page.keyboard.press("Shift+Enter")
        try:
            page.wait_for_function(
                "(el) => /\\[(\\*|\\d+)\\]/.test(el.textContent)", arg=prompt.element_handle(), timeout=5000
            )
            break
        except Exception:
            if attempt == 4:
                raise
    try:
        page.wait_for_selector(".widget-slider", timeout=60000)
    except Exception:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "explorer-failed.png"))
        raise
    text_js = "() => [...document.querySelectorAll('.jp-OutputArea-output pre')].map(e => e.textContent).join('\\n')"
    page.wait_for_function(f"() => ({text_js})().includes('Ho = ')", timeout=60000)
    before = page.evaluate(text_js)
    assert "floor((7 + 2*1 - 1*(3-1) - 1) / 2) + 1 = 4" in before
    assert page.locator(".jp-OutputArea-output img").count() >= 1, "the explorer shows no figure"

    sliders = page.locator(".widget-slider")
    labels = [sliders.nth(i).locator("label").inner_text() for i in range(sliders.count())]
    assert {"height H", "kernel k", "stride s", "padding p", "dilation d", "in channels C", "groups g"} <= set(labels)
    handle = sliders.nth(labels.index("stride s")).locator(".noUi-handle")
    handle.focus()
    page.keyboard.press("ArrowRight")  # stride 2 -> 3
    page.wait_for_function(f"() => ({text_js})().includes('/ 3) + 1 = 3')", timeout=30000)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "explorer.png"))
    assert not offline.blocked, f"JupyterLab tried to reach the network: {offline.blocked}"
    page.close()
