"""Helpers for the site's tests and benchmarks: build the book, serve it, open it in headless Chromium.

The page checks live here, apart from the tests, so that the same checker that passes the real site can be
pointed at a deliberately broken page and seen to fail (tests/test_site.py does both).
"""

from __future__ import annotations

import contextlib
import functools
import html
import html.parser
import http.server
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

import yaml

ROOT = Path(__file__).resolve().parents[1]
HTML_DIR = ROOT / "_build" / "html"
SCREENSHOT_DIR = ROOT / "_build" / "screenshots"
#: the front matter of a MyST notebook chapter, for the tiny books the site tests build
MYST_FRONT_MATTER = """\
---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---
"""

#: the command `make site` runs (Makefile), from the venv that runs the tests
BUILD_ARGS = ["build", ".", "--warningiserror", "--keep-going"]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
    "--window-size=1280,1000",
    # offline like CI: no host name but 127.0.0.1 resolves, so a page that needs a CDN fails here too
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]


def jupyter_book_exe() -> str:
    """The venv's jupyter-book, beside the Python that runs us (the shell's PATH may lack the venv)."""
    exe = Path(sys.executable).with_name("jupyter-book")
    return str(exe) if exe.exists() else "jupyter-book"


def build_book(root: Path, log_path: Path, *extra: str, timeout: float = 1800,
               env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the site build in ``root`` exactly as `make site` does; stdout and stderr go to ``log_path``."""
    with open(log_path, "w") as log:
        return subprocess.run([jupyter_book_exe(), *BUILD_ARGS, *extra], cwd=root, stdout=log,
                              stderr=subprocess.STDOUT, timeout=timeout, check=False, env=env)


def build_edition(root: Path, log_path: Path, edition: str, timeout: float = 1800,
                  env: dict | None = None) -> subprocess.CompletedProcess:
    """Build ``edition`` of the book in ``root`` as `make site-solutions` does (book/_ext/editions.py)."""
    with open(log_path, "w") as log:
        return subprocess.run([sys.executable, str(root / "book" / "_ext" / "editions.py"), "build",
                               "--edition", edition], cwd=root, stdout=log, stderr=subprocess.STDOUT,
                              timeout=timeout, check=False, env=env)


def log_tail(log_path: Path, lines: int = 60) -> str:
    return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])


# ---------------------------------------------------------------------------------------------------------
# the two editions: answer cells, as the chapters' sources tag them, and the links to notebooks


@dataclass(frozen=True)
class AnswerCell:
    chapter: str  # the page, e.g. "book/lrn.html"
    assignment: str
    source: str


def _notebook_of(path: Path):
    import jupytext

    text = path.read_text()
    if not text.startswith("---") or "kernelspec" not in text.split("\n---", 1)[0]:
        return None  # plain Markdown: no cells
    return jupytext.reads(text, fmt="md:myst")


def answer_cells(root: Path = ROOT) -> tuple[list[AnswerCell], list[str]]:
    """The cells tagged ``answer-<assignment>`` in the chapters of ``root``'s _toc.yml, read with jupytext
    (not with the site's extension, which this checks), and the source of every other code cell there."""
    answers, others = [], []
    for page in toc_pages(root / "_toc.yml"):
        nb = _notebook_of(root / Path(page).with_suffix(".md"))
        if nb is None:
            continue
        for cell in nb.cells:
            tags = [t for t in cell.metadata.get("tags", []) if str(t).startswith("answer-")]
            if cell.cell_type == "code" and tags:
                answers.append(AnswerCell(page, tags[0][len("answer-"):], cell.source))
            elif cell.cell_type == "code":
                others.append(cell.source)
    return answers, others


def give_away_lines(answers: list[AnswerCell], others: list[str],
                    min_length: int = 16) -> dict[str, AnswerCell]:
    """Each answer's lines that no untagged code cell of the book holds and that say something (16 characters
    or more, not a comment), whitespace collapsed: finding one in a file finds the answer there."""
    def norm(line):
        return " ".join(line.split())

    elsewhere = {norm(line) for text in others for line in text.splitlines()}
    lines = {}
    for answer in answers:
        for line in answer.source.splitlines():
            key = norm(line)
            if len(key) >= min_length and not key.startswith("#") and key not in elsewhere:
                lines.setdefault(key, answer)
    return lines


def answer_only_names(answers: list[AnswerCell], root: Path = ROOT) -> set[str]:
    """Names with an underscore (code, which the search index keeps whole: its stemmer leaves them be) that
    the answer cells use and no other cell or paragraph of any chapter does."""
    def names(text):
        return {w.lower() for w in re.findall(r"\b[A-Za-z][A-Za-z0-9]*_[A-Za-z0-9_]+\b", text)}

    elsewhere = set()
    for page in toc_pages(root / "_toc.yml"):
        path = root / Path(page).with_suffix(".md")
        nb = _notebook_of(path)
        if nb is None:
            elsewhere |= names(path.read_text())
            continue
        for cell in nb.cells:
            if not any(str(t).startswith("answer-") for t in cell.metadata.get("tags", [])):
                elsewhere |= names(cell.source)
    return set().union(*(names(a.source) for a in answers)) - elsewhere


def search_terms(html_dir: Path) -> set[str]:
    """The words of a built site's search index (searchindex.js)."""
    text = (html_dir / "searchindex.js").read_text()
    data = json.loads(text[text.index("(") + 1:text.rindex(")")])
    return set(data["terms"])


class _Text(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data):
        self.parts.append(data)


def file_texts(folder: Path) -> Iterator[tuple[str, str]]:
    """(path relative to ``folder``, text) of every text file: an HTML page as its text without tags (code is
    split into highlighted spans) and as written, a notebook as its JSON and its decoded strings."""
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        raw = path.read_bytes()
        if b"\x00" in raw[:4096] or path.suffix in (".png", ".jpg", ".woff", ".woff2", ".ico", ".gif"):
            continue
        text = raw.decode("utf-8", errors="replace")
        if path.suffix == ".html":
            parser = _Text()
            parser.feed(text)
            text += "\n" + "".join(parser.parts)
        elif path.suffix in (".ipynb", ".json"):
            try:
                text += "\n" + "\n".join(_json_strings(json.loads(text)))
            except ValueError:
                pass
        yield path.relative_to(folder).as_posix(), " ".join(text.split())


def _json_strings(data) -> Iterator[str]:
    """Every string in a JSON document; a list of strings also joined (a notebook's cell source)."""
    if isinstance(data, str):
        yield data
    elif isinstance(data, list):
        if data and all(isinstance(x, str) for x in data):
            yield "".join(data)
        for x in data:
            yield from _json_strings(x)
    elif isinstance(data, dict):
        for value in data.values():
            yield from _json_strings(value)


def where_lines_are(folder: Path, lines) -> dict[str, list[str]]:
    """For each line (whitespace collapsed), the files under ``folder`` that hold it."""
    found = {line: [] for line in lines}
    for rel, text in file_texts(folder):
        for line in found:
            if line in text:
                found[line].append(rel)
    return found


LAUNCH_HOSTS = {"binder": "mybinder.org", "jupyterhub": "hub/user-redirect/git-pull", "colab": "colab."}


def header_links(page: Path) -> dict[str, list[str]]:
    """The launch buttons' and the download button's links of a built page, by kind."""
    text = page.read_text(errors="replace")
    hrefs = re.findall(r'href="([^"]+)"', text)
    links = {kind: [html.unescape(h) for h in hrefs if marker in h] for kind, marker in LAUNCH_HOSTS.items()}
    links["download"] = [h for h in hrefs if not urlsplit(h).scheme and "_sources/" in h]
    return links


def launch_target(url: str, repo_url: str) -> tuple[str, str]:
    """(branch, path in that branch) that a launch link opens, for a repository on GitHub."""
    from urllib.parse import parse_qs

    owner_repo = urlsplit(repo_url).path.strip("/")
    parts = urlsplit(url)
    if "mybinder" in parts.netloc:  # /v2/gh/<owner>/<repo>/<branch>?urlpath=lab/tree/<path>
        prefix = f"/v2/gh/{owner_repo}/"
        assert parts.path.startswith(prefix), url
        branch = parts.path[len(prefix):]
        path = parse_qs(parts.query)["urlpath"][0].split("tree/", 1)[1]
    elif "colab" in parts.netloc:  # /github/<owner>/<repo>/blob/<branch>/<path>
        prefix = f"/github/{owner_repo}/blob/"
        assert parts.path.startswith(prefix), url
        branch, path = parts.path[len(prefix):].split("/", 1)
    else:  # nbgitpuller: ?repo=<url>&branch=<branch>&urlpath=lab/tree/<repo name>/<path>
        query = parse_qs(parts.query)
        assert query["repo"][0].rstrip("/") == repo_url.rstrip("/"), url
        branch = query["branch"][0]
        path = query["urlpath"][0].split("tree/", 1)[1].split("/", 1)[1]
    return branch, unquote(path)


def toc_pages(toc_path: Path = ROOT / "_toc.yml") -> list[str]:
    """The built page of every file in _toc.yml (root first), as paths relative to the html folder."""
    toc = yaml.safe_load(toc_path.read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))
            for part in entry.get("parts", []) or []:
                walk(part.get("chapters"))

    walk(toc.get("chapters"))
    for part in toc.get("parts", []) or []:
        walk(part.get("chapters"))
    return [f"{Path(f).with_suffix('')}.html" for f in files]


# ---------------------------------------------------------------------------------------------------------
# serving and driving


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the stdlib's name)
        pass


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve ``directory`` over http on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def chromium() -> Iterator:
    """Headless Debian Chromium through Debian's chromedriver; selenium-manager never runs."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        driver.set_page_load_timeout(60)
        driver.set_script_timeout(60)
        try:
            yield driver
        finally:
            driver.quit()


# ---------------------------------------------------------------------------------------------------------
# the checks


@dataclass(frozen=True)
class Problem:
    kind: str  # render, console, external, math, image, error-output, widget, link
    detail: str

    def __str__(self) -> str:
        return f"[{self.kind}] {self.detail}"


def _wait(driver, script: str, timeout: float = 20.0, interval: float = 0.1):
    """Poll ``script`` until it returns something truthy; returns the last value."""
    deadline = time.monotonic() + timeout
    value = driver.execute_script(script)
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = driver.execute_script(script)
    return value


_MAIN = "document.querySelector('main article, article.bd-article, main, [role=main]')"

# The main text with code, math already typeset and scripts left out: raw TeX left there was not typeset.
_PROSE_TEXT = f"""
const main = {_MAIN};
if (!main) return '';
const copy = main.cloneNode(true);
copy.querySelectorAll('pre, code, script, style, mjx-container, .highlight, textarea')
    .forEach(e => e.remove());
return copy.textContent;
"""

_RESOURCES = """
const urls = performance.getEntriesByType('resource').map(e => e.name);
document.querySelectorAll('script[src], img[src], iframe[src], source[src], video[src], audio[src]')
    .forEach(e => urls.push(e.src));
document.querySelectorAll('link[href]').forEach(e => {
    const rel = (e.getAttribute('rel') || '').toLowerCase();
    if (/stylesheet|preload|modulepreload|icon|manifest|prefetch/.test(rel)) urls.push(e.href);
});
return urls;
"""

_WIDGETS = """
return Array.from(document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]'))
    .map(tag => {
        const area = tag.previousElementSibling;
        const ok = !!area && area.classList.contains('widget-subarea')
            && !!area.querySelector('.jupyter-widgets, .lm-Widget')
            && area.getBoundingClientRect().height > 0;
        return {ok: ok, text: (area && area.textContent || '').slice(0, 200)};
    });
"""

_ERROR_OUTPUTS = f"""
const main = {_MAIN} || document.body;
const bad = [];
main.querySelectorAll('.output.traceback, .output.error, .cell_output .error, .cell_output .traceback')
    .forEach(e => bad.push('error output: ' + e.textContent.trim().slice(0, 200)));
main.querySelectorAll('.output.stderr').forEach(e => {{
    if (/Traceback|Error/.test(e.textContent)) bad.push('stderr: ' + e.textContent.trim().slice(0, 200));
}});
if (/Traceback \\(most recent call last\\)/.test(main.textContent)) bad.push('"Traceback" in the page text');
return bad;
"""

# every image of the page, the header's launch-button logos too (scrolled to, in case one loads lazily)
_IMAGES = """
return Array.from(document.querySelectorAll('img')).map(img => {
    img.scrollIntoView();
    return {src: img.currentSrc || img.src, done: img.complete, w: img.naturalWidth};
});
"""

# raw TeX delimiters: \( \) \[ \] $$, or $...$ around something that is not a price
_RAW_TEX = r"\\\(|\\\)|\\\[|\\\]|\$\$|\$[^$\s\d][^$\n]{0,200}\$"


class _IdCollector(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name == "id" or (tag == "a" and name == "name"):
                self.ids.add(value or "")


@functools.lru_cache(maxsize=512)
def _ids_in(path: Path, mtime: float) -> frozenset[str]:
    collector = _IdCollector()
    collector.feed(path.read_text(errors="replace"))
    return frozenset(collector.ids)


def check_links(hrefs: list[str], page_url: str, base_url: str, html_root: Path) -> list[Problem]:
    """Every link to a page or anchor of the site must exist: its file under ``html_root``, and its #id."""
    problems = []
    for href in sorted(set(hrefs)):
        url = urljoin(page_url, href)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not url.startswith(base_url):
            continue  # mailto:, javascript:, the launch buttons and the repository: not ours to resolve
        target, fragment = urldefrag(url)
        rel = unquote(urlsplit(target).path)[len(urlsplit(base_url).path):]
        path = html_root / rel
        if path.is_dir():
            path = path / "index.html"
        if not path.is_file():
            problems.append(Problem("link", f"{href!r} -> missing file {rel or '/'}"))
            continue
        fragment = unquote(fragment)
        if fragment and path.suffix == ".html" and fragment not in _ids_in(path, path.stat().st_mtime):
            problems.append(Problem("link", f"{href!r} -> no id {fragment!r} in {rel}"))
    return problems


def check_page(driver, base_url: str, rel_path: str, html_root: Path) -> list[Problem]:
    """Open one page and return everything wrong with it (an empty list for a good page).

    Checks: it renders (a title and a non-empty main text); no SEVERE console message; nothing loaded
    from outside the site; MathJax typeset every math element and no raw TeX is left; every image
    loaded; no error output; every embedded widget rendered; every internal link and anchor resolves.
    """
    problems: list[Problem] = []
    page_url = urljoin(base_url, rel_path)
    driver.get_log("browser")  # drop what earlier pages left in the buffer
    driver.get(page_url)
    _wait(driver, "return document.readyState === 'complete'")

    title = driver.title.strip()
    main_text = driver.execute_script(f"const m = {_MAIN}; return m ? m.innerText.trim() : ''")
    if not title:
        problems.append(Problem("render", "no <title>"))
    if not main_text:
        problems.append(Problem("render", "the main content is empty"))

    # math: wait for MathJax's startup promise, then every math element must hold a typeset container
    n_math = driver.execute_script("return document.querySelectorAll('.math').length")
    if n_math:
        # MathJax's script is deferred, so by the load event it has run and made its startup promise
        state = driver.execute_async_script("""
            const done = arguments[arguments.length - 1];
            if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
                MathJax.startup.promise.then(() => done('typeset'), e => done('error: ' + e));
            } else { done('MathJax did not load'); }""")
        if state != "typeset":
            problems.append(Problem("math", f"MathJax: {state}"))
        untypeset = driver.execute_script(
            "return Array.from(document.querySelectorAll('.math'))"
            ".filter(e => !e.querySelector('mjx-container') || e.querySelector('mjx-merror'))"
            ".map(e => e.textContent.slice(0, 80))")
        for tex in untypeset:
            problems.append(Problem("math", f"not typeset: {tex!r}"))
    prose = driver.execute_script(_PROSE_TEXT) or ""
    for raw in sorted(set(re.findall(_RAW_TEX, prose)))[:5]:
        problems.append(Problem("math", f"raw TeX left in the text: {raw[:80]!r}"))

    # widgets: the embed manager replaces each view tag's placeholder with a rendered view
    n_views = driver.execute_script(
        "return document.querySelectorAll('script[type=\"application/vnd.jupyter.widget-view+json\"]')"
        ".length")
    if n_views:
        deadline = time.monotonic() + 10  # the manager renders on the load event, in well under a second
        views = driver.execute_script(_WIDGETS)
        while not all(v["ok"] for v in views) and time.monotonic() < deadline:
            time.sleep(0.1)
            views = driver.execute_script(_WIDGETS)
        for view in views:
            if not view["ok"]:
                problems.append(Problem("widget", f"a widget did not render ({view['text']!r})"))

    for bad in driver.execute_script(_ERROR_OUTPUTS):
        problems.append(Problem("error-output", bad))

    images = driver.execute_script(_IMAGES)
    if images and not all(i["done"] for i in images):
        _wait(driver, "return Array.from(document.images).every(i => i.complete)", timeout=10)
        images = driver.execute_script(_IMAGES)
    for img in images:
        if not img["w"]:
            problems.append(Problem("image", f"did not load: {img['src'][:120]}"))

    origin = base_url.rstrip("/")
    for url in sorted(set(driver.execute_script(_RESOURCES))):
        if not (url.startswith(origin) or url.startswith(("data:", "blob:", "about:"))):
            problems.append(Problem("external", f"loads {url} (the site must work offline)"))

    for entry in driver.get_log("browser"):
        message = entry.get("message", "")
        if entry.get("level") == "SEVERE" and "/favicon.ico" not in message:
            problems.append(Problem("console", message[:300]))

    hrefs = driver.execute_script(
        "return Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href'))")
    problems += check_links(hrefs, page_url, base_url, html_root)
    return problems


def sidebar_links(driver, base_url: str, rel_path: str) -> list[str]:
    """The pages the left navigation of ``rel_path`` links to, relative to the site root."""
    driver.get(urljoin(base_url, rel_path))
    _wait(driver, "return document.readyState === 'complete'")
    hrefs = driver.execute_script(
        "return Array.from(document.querySelectorAll('nav.bd-docs-nav a[href], .bd-sidebar-primary a[href]'))"
        ".map(a => a.href)")
    pages = []
    for href in hrefs:
        target = urldefrag(href)[0]
        if target.startswith(base_url) and target.endswith(".html"):
            pages.append(target[len(base_url):])
    return pages


def crawl_navigation(driver, base_url: str, start: str = "index.html") -> list[str]:
    """Every page reachable through the sidebar, breadth first from ``start`` (after its redirect)."""
    driver.get(urljoin(base_url, start))
    _wait(driver, f"return location.href !== '{urljoin(base_url, start)}' || "
                  "!document.querySelector('meta[http-equiv=Refresh]')", timeout=10)
    _wait(driver, "return document.readyState === 'complete' && !!document.querySelector('nav')", timeout=10)
    first = driver.current_url[len(base_url):]
    seen, queue = [first], [first]
    while queue:
        for page in sidebar_links(driver, base_url, queue.pop(0)):
            if page not in seen:
                seen.append(page)
                queue.append(page)
    return seen


def full_page_screenshot(driver, path: Path, width: int = 1280, max_height: int = 5000) -> None:
    """Save the whole page (up to ``max_height`` pixels) as a PNG."""
    height = driver.execute_script("return Math.max(document.body.scrollHeight, "
                                   "document.documentElement.scrollHeight)")
    driver.set_window_size(width, min(int(height) + 120, max_height))
    driver.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    driver.set_window_size(1280, 1000)
