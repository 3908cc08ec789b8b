"""The course site: it builds as `make site` builds it, and every page works in a real, offline browser.

The book is built once per session (through the execution cache, so a rebuild with nothing changed takes
seconds) and served from _build/html on 127.0.0.1; headless Debian Chromium opens every page reached from
the sidebar and checks it (tests/site_helpers.py: check_page). The build's own failure modes and the page
checker are each shown to fail on a deliberately broken input, so a green run means something.

Both editions are checked: the student edition (`make site`, _build/html) shows no line of a cell the
chapters' sources tag ``answer-<assignment>`` in any file, and a pointer in its place; the solutions edition
(`make site-solutions`, _build/solutions/html, built from the same execution cache) shows every one and works
in the browser too; every launch and download link of both opens a file of the build.
"""

from __future__ import annotations

import fcntl
import json
import re
import shutil
import struct
import zlib
from pathlib import Path

import nbformat
import pytest
import yaml
from site_helpers import (
    HTML_DIR,
    MYST_FRONT_MATTER,
    ROOT,
    SCREENSHOT_DIR,
    answer_cells,
    answer_only_names,
    build_book,
    build_edition,
    check_page,
    chromium,
    crawl_navigation,
    full_page_screenshot,
    give_away_lines,
    header_links,
    launch_target,
    log_tail,
    search_terms,
    serve,
    toc_pages,
    where_lines_are,
)

# the first test to ask for built_site pays for the build: a cold one executes every chapter (< 10 min)
pytestmark = [pytest.mark.site, pytest.mark.timeout(2400)]

TOC_PAGES = toc_pages()
#: pages outside the table of contents that Sphinx writes and the navbar links to
EXTRA_PAGES = ["genindex.html", "search.html"]
#: the chapters whose screenshots a person looks at before a release
SCREENSHOT_PAGES = ["book/intro.html", "book/lrn.html"]
SOLUTIONS_DIR = ROOT / "_build" / "solutions" / "html"


# ---------------------------------------------------------------------------------------------------------
# fixtures


def _locked_build(log_name: str, build) -> None:
    """Run ``build(log_path)``, one build at a time in this tree (pytest-xdist workers, or a colleague's run
    of this file); fail with the log's tail if it fails."""
    build_dir = ROOT / "_build"
    build_dir.mkdir(exist_ok=True)
    log_path = build_dir / log_name
    with open(build_dir / ".site-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = build(log_path)
    if proc.returncode != 0:
        pytest.fail(f"the site build failed (exit {proc.returncode}); the end of {log_path}:\n"
                    f"{log_tail(log_path)}", pytrace=False)


@pytest.fixture(scope="session")
def built_site() -> Path:
    """Build the book's student edition with `make site`'s command."""
    _locked_build("site-build.log", lambda log: build_book(ROOT, log))
    return HTML_DIR


@pytest.fixture(scope="session")
def solutions_site(built_site) -> Path:
    """The solutions edition, as `make site-solutions` builds it, after the student edition: it executes
    nothing, every chapter comes from the execution cache the student build filled."""
    _locked_build("site-solutions-build.log", lambda log: build_edition(ROOT, log, "solutions"))
    log = (ROOT / "_build" / "site-solutions-build.log").read_text(errors="replace")
    assert "Executed notebook in" not in log, "the solutions edition executed a chapter the cache should hold"
    return SOLUTIONS_DIR


@pytest.fixture(scope="session")
def browser():
    with chromium() as driver:
        yield driver


@pytest.fixture(scope="session")
def site_url(built_site):
    with serve(built_site) as url:
        yield url


@pytest.fixture(scope="session")
def solutions_url(solutions_site):
    with serve(solutions_site) as url:
        yield url


# ---------------------------------------------------------------------------------------------------------
# the build fails on a raising cell and on any warning


TINY_CHAPTER = MYST_FRONT_MATTER + """

# A tiny chapter

Some math, $a^2 + b^2$.

```{{code-cell}} ipython3
{code}
```
"""


def _build_tiny_book(tmp_path: Path, code: str):
    """A one-chapter book with the repository's _config.yml, _static, _templates and extension, then built."""
    for name in ("_config.yml", "references.bib"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "book").mkdir()
    for name in ("_static", "_templates", "_ext"):
        shutil.copytree(ROOT / "book" / name, tmp_path / "book" / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/intro\n")
    (tmp_path / "book" / "intro.md").write_text(TINY_CHAPTER.format(code=code))
    log_path = tmp_path / "build.log"
    proc = build_book(tmp_path, log_path, timeout=600)
    return proc.returncode, log_path.read_text(errors="replace")


def test_site_tiny_book_builds(tmp_path):
    """The control for the two failure tests: the same tiny book with a good cell builds."""
    rc, log = _build_tiny_book(tmp_path, 'print("sum:", 1 + 1)')
    assert rc == 0, log[-3000:]
    page = (tmp_path / "_build" / "html" / "book" / "intro.html").read_text()
    assert "sum: 2" in page


def test_site_build_fails_when_a_cell_raises(tmp_path):
    rc, log = _build_tiny_book(tmp_path, 'raise ValueError("a cell that raises")')
    assert rc != 0, "a chapter whose cell raises must fail the build"
    assert "a cell that raises" in log
    page = tmp_path / "_build" / "html" / "book" / "intro.html"
    assert not page.exists() or "Traceback" not in page.read_text(), "a page shows the traceback"


def test_site_build_fails_when_a_cell_warns(tmp_path):
    rc, log = _build_tiny_book(tmp_path, 'import warnings\nwarnings.warn("a cell that warns")')
    assert rc != 0, "a chapter whose cell writes a warning must fail the build (-W)"
    assert "stderr was found in the cell outputs" in log


# ---------------------------------------------------------------------------------------------------------
# the built site, page by page


def test_site_navigation_reaches_every_chapter(site_url, browser, built_site):
    reached = crawl_navigation(browser, site_url)
    assert reached == TOC_PAGES, f"the sidebar reaches {reached}, _toc.yml lists {TOC_PAGES}"
    # and no chapter page was built that the table of contents (and so the navigation) leaves out
    built = sorted(p.relative_to(built_site).as_posix() for p in (built_site / "book").rglob("*.html"))
    assert built == sorted(TOC_PAGES)


@pytest.mark.parametrize("page", TOC_PAGES + EXTRA_PAGES)
def test_site_page_works_offline(site_url, browser, built_site, page):
    problems = check_page(browser, site_url, page, built_site)
    assert not problems, f"{page}:\n" + "\n".join(map(str, problems))


def test_site_intro_math_and_widget_render(site_url, browser, built_site):
    """The intro has math and a widget, so the checks above are not vacuous before the chapters exist."""
    assert not check_page(browser, site_url, "book/intro.html", built_site)
    n_typeset = browser.execute_script("return document.querySelectorAll('.math mjx-container').length")
    assert n_typeset >= 5
    widget = browser.execute_script("""
        const area = document.querySelector('.widget-subarea');
        if (!area) return null;
        const img = area.querySelector('img');
        return {slider: !!area.querySelector('.widget-slider'),
                readout: (area.querySelector('.widget-readout') || {}).textContent,
                plot: img ? img.naturalWidth : 0};""")
    assert widget is not None, "the intro's widget did not render"
    assert widget["slider"] and widget["readout"] == "0.50", widget
    assert widget["plot"] > 100, "the plot inside the widget's output did not load"


def test_site_hidden_input_is_folded_and_its_output_shows(site_url, browser, built_site):
    """A cell tagged hide-input (the intro's widget and machine cells) shows its output; its code waits behind
    a closed toggle that opens on a click."""
    browser.get(site_url + "book/intro.html")
    cells = browser.execute_script("""
        return Array.from(document.querySelectorAll('.cell.tag_hide-input')).map(cell => {
            const details = cell.querySelector('details.hide');
            const code = cell.querySelector('.cell_input pre');
            const output = cell.querySelector('.cell_output');
            return {closed: !!details && !details.open, summary: details ? details.innerText.trim() : '',
                    codeShown: !!code && code.checkVisibility(),
                    outputHeight: output ? output.getBoundingClientRect().height : 0};
        });""")
    assert len(cells) >= 2, cells
    for cell in cells:
        assert cell["closed"] and not cell["codeShown"] and cell["outputHeight"] > 20, cell
        assert cell["summary"].startswith("Show code cell source"), cell
    shown = browser.execute_script("""
        const details = document.querySelector('.cell.tag_hide-input details.hide');
        details.querySelector('summary').click();
        return details.open && details.querySelector('.cell_input pre').checkVisibility();""")
    assert shown, "the toggle does not open the hidden code"


def test_site_screenshots(site_url, browser, built_site):
    """Two chapters as a reader sees them, in _build/screenshots/ (look at them before a release)."""
    for page in SCREENSHOT_PAGES:
        path = SCREENSHOT_DIR / (Path(page).stem + ".png")
        check_page(browser, site_url, page, built_site)  # waits for MathJax and the widgets
        full_page_screenshot(browser, path)
        width, height = struct.unpack(">II", path.read_bytes()[16:24])
        assert width >= 1000 and height >= 600, (path, width, height)


# ---------------------------------------------------------------------------------------------------------
# the two editions: the student site shows no answer, the solutions site shows them all


def _tagged_answers():
    """The cells the chapters' sources tag ``answer-<assignment>`` and the lines that give each away."""
    answers, others = answer_cells()
    if not answers:
        pytest.skip("no chapter tags a cell answer-<assignment> yet (test_site_editions.py covers the "
                    "mechanism on a small book)")
    lines = give_away_lines(answers, others)
    for answer in answers:
        assert any(owner == answer for owner in lines.values()), \
            f"an answer-{answer.assignment} cell of {answer.chapter} has no line the check can look for " \
            f"(16+ characters, found in no other cell): {answer.source[:200]!r}"
    return answers, lines


def _pointers(page: Path, assignment: str) -> int:
    return sum({"course-answer", f"course-answer-{assignment}"} <= set(c.split())
               for c in re.findall(r'class="([^"]*)"', page.read_text(errors="replace")))


def test_site_editions_are_marked(built_site, solutions_site):
    assert (built_site / "EDITION").read_text() == "student"
    assert (solutions_site / "EDITION").read_text() == "solutions"


def test_site_student_edition_shows_no_answer(built_site):
    """No line of a tagged cell in any file of the student site (pages, _sources, notebooks, the search
    index), and a pointer to the exercise on the page for each tagged cell."""
    answers, lines = _tagged_answers()
    leaks = {line: files for line, files in where_lines_are(built_site, lines).items() if files}
    assert not leaks, "the student site shows answers:\n" + "\n".join(
        f"  {lines[line].chapter} answer-{lines[line].assignment}: {line!r} in {files[:4]}"
        for line, files in leaks.items())
    for chapter, assignment in {(a.chapter, a.assignment) for a in answers}:
        tagged = sum(a.chapter == chapter and a.assignment == assignment for a in answers)
        assert _pointers(built_site / chapter, assignment) == tagged, (chapter, assignment)


def test_site_search_index_holds_answers_in_the_solutions_edition_only(built_site, solutions_site):
    """The names only answer cells use (sum_g_xhat, run_var, ...) are search terms of the solutions site, and
    none of the student site's."""
    answers, _ = _tagged_answers()
    names = answer_only_names(answers)
    assert names, "the answers use no name of their own: nothing to look for"
    assert not names & search_terms(built_site), names & search_terms(built_site)
    assert names <= search_terms(solutions_site), names - search_terms(solutions_site)


def test_site_solutions_edition_shows_every_answer(solutions_site):
    answers, lines = _tagged_answers()
    where = where_lines_are(solutions_site, lines)
    for line, answer in lines.items():
        assert {answer.chapter, f"_sources/{answer.chapter[:-len('.html')]}.ipynb"} <= set(where[line]), \
            (answer.chapter, line, where[line])
    for chapter in {a.chapter for a in answers}:
        assert "course-answer" not in (solutions_site / chapter).read_text()


NOTEBOOK_PAGES = [p for p in TOC_PAGES if (ROOT / p).with_suffix(".md").read_text().startswith("---")]


@pytest.mark.parametrize("edition", ["student", "solutions"])
def test_site_launch_and_download_links_resolve(edition, request):
    """Every chapter's Binder, JupyterHub and Colab links open <path_to_book>/<chapter>.ipynb on the published
    branch, which is the site itself: a notebook of this build; the download links are files of the build."""
    site = request.getfixturevalue("built_site" if edition == "student" else "solutions_site")
    config = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    assert config["branch"] not in ("main", "master"), "launch links must never open the source branch"
    assert NOTEBOOK_PAGES, "no chapter is a notebook"
    for page in NOTEBOOK_PAGES:
        links = header_links(site / page)
        for kind in ("binder", "jupyterhub", "colab"):
            assert len(links[kind]) == 1, (page, kind, links[kind])
            branch, path = launch_target(links[kind][0], config["url"])
            assert branch == config["branch"] and path == f"{config['path_to_book']}/{page[:-5]}.ipynb", \
                (page, links[kind][0])
            nbformat.validate(nbformat.read(site / path, as_version=4))
        downloads = {(site / page).parent.joinpath(h).resolve() for h in links["download"]}
        assert {p.suffix for p in downloads} == {".ipynb", ".md"}, (page, links["download"])
        assert all(p.is_file() and site.resolve() in p.parents for p in downloads), (page, downloads)
    # the chapters' shared helpers lie beside the notebooks, where a launched notebook imports them from
    assert (site / "_sources" / "book" / "chapter_tools.py").read_bytes() == \
        (ROOT / "book" / "chapter_tools.py").read_bytes()


@pytest.mark.parametrize("page", TOC_PAGES + EXTRA_PAGES)
def test_site_solutions_page_works_offline(solutions_url, browser, solutions_site, page):
    """The solutions edition works in the browser as well (a second of Chromium a page)."""
    problems = check_page(browser, solutions_url, page, solutions_site)
    assert not problems, f"{page}:\n" + "\n".join(map(str, problems))


# ---------------------------------------------------------------------------------------------------------
# the checker fails on broken pages


def _png(path: Path, width: int = 8, height: int = 6) -> None:
    """A small grey PNG (no imaging library needed)."""
    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))


def _widget_state():
    import ipywidgets
    from ipywidgets.embed import embed_data

    data = embed_data(views=[ipywidgets.IntSlider(value=3, description="n")])
    return json.dumps(data["manager_state"]), json.dumps(data["view_specs"][0])


GOOD_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>A good page</title>
<script>window.MathJax = {{options: {{processHtmlClass: "math"}}}};</script>
{mathjax}
<script type="application/vnd.jupyter.widget-state+json">{state}</script>
<script src="_static/widgets/mathjax2-shim.js"></script>
<script src="_static/widgets/embed.js"></script>
{head}
</head><body class="tex2jax_ignore mathjax_ignore">
<main><article class="bd-article">
{content}
{body}
</article></main></body></html>
"""
GOOD_CONTENT = """<h1 id="top">A good page</h1>
<p>Inline math <span class="math notranslate nohighlight">\\(a^2 + b^2\\)</span>, an image
<img src="grey.png" alt="grey">, <a href="#top">a link to the top</a>
and <a href="good.html#top">one to itself</a>.</p>
<div class="cell_output"><script type="application/vnd.jupyter.widget-view+json">{view}</script></div>
"""
MATHJAX = '<script defer src="_static/mathjax/tex-chtml-full.js"></script>'

#: defect -> (what it changes in the good page, the problem kinds the checker must report)
DEFECTS = {
    "raw-tex": ({"body": "<p>Left as typed: $x^2$.</p>"}, {"math"}),
    "math-not-typeset": ({"mathjax": ""}, {"math"}),
    "missing-image": ({"body": '<img src="missing.png" alt="gone">'}, {"image"}),
    "traceback": ({"body": '<div class="cell_output"><div class="output traceback"><pre>Traceback '
                           "(most recent call last):\nValueError: boom</pre></div></div>"}, {"error-output"}),
    "stderr-traceback": ({"body": '<div class="output stderr"><pre>Traceback (most recent call last):\n'
                                  "  File x\nRuntimeError</pre></div>"}, {"error-output"}),
    "widget-without-state": ({"body": '<script type="application/vnd.jupyter.widget-view+json">'
                                      '{"version_major": 2, "version_minor": 0, "model_id": "nope"}'
                                      "</script>"}, {"widget"}),
    "script-error": ({"body": '<script>throw new Error("boom from the page")</script>'}, {"console"}),
    # Chromium resolves no host name but 127.0.0.1 (site_helpers.CHROMIUM_FLAGS): nothing leaves the machine
    "cdn-script": ({"head": '<script src="https://cdn.example.invalid/lib.js"></script>'}, {"external"}),
    "missing-page": ({"body": '<a href="chapter-that-does-not-exist.html">gone</a>'}, {"link"}),
    "missing-anchor": ({"body": '<a href="good.html#no-such-section">gone</a>'}, {"link"}),
    "empty": ({"content": ""}, {"render"}),
}


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory):
    """good.html and one page per defect, with the vendored MathJax and widget manager at _static/."""
    root = tmp_path_factory.mktemp("checker-site")
    (root / "_static").symlink_to(ROOT / "book" / "_static", target_is_directory=True)
    _png(root / "grey.png")
    state, view = _widget_state()
    good = {"mathjax": MATHJAX, "head": "", "body": "", "state": state,
            "content": GOOD_CONTENT.format(view=view)}
    (root / "good.html").write_text(GOOD_PAGE.format(**good))
    for name, (change, _) in DEFECTS.items():
        (root / f"defect-{name}.html").write_text(GOOD_PAGE.format(**(good | change)))
    with serve(root) as url:
        yield url, root


def test_site_checker_passes_a_good_page(browser, broken_site):
    url, root = broken_site
    assert check_page(browser, url, "good.html", root) == []
    typeset = browser.execute_script("return document.querySelectorAll('.math mjx-container').length")
    rendered = browser.execute_script(
        "return document.querySelectorAll('.widget-subarea .widget-slider').length")
    assert (typeset, rendered) == (1, 1), "the vendored MathJax or widget manager did not run offline"


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_site_checker_flags_a_broken_page(browser, broken_site, defect):
    url, root = broken_site
    problems = check_page(browser, url, f"defect-{defect}.html", root)
    kinds = {p.kind for p in problems}
    expected = DEFECTS[defect][1]
    assert expected <= kinds, f"{defect}: expected {expected}, the checker reported {problems}"
