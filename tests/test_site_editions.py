"""The site's machinery on a small book of its own: the two editions, the library-keyed execution cache and
publishing to a gh-pages branch (book/_ext/course_site.py, book/_ext/editions.py).

The small book uses the repository's _config.yml, _static, _templates and extension, one chapter with a cell
tagged ``answer-lrn``, and the exercises page it points to. It builds in seconds, so the build's failure modes
can be tried one by one; tests/test_site.py checks the same properties on the real book, for the cells its
chapters tag.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from site_helpers import (
    MYST_FRONT_MATTER,
    ROOT,
    answer_cells,
    answer_only_names,
    build_book,
    build_edition,
    give_away_lines,
    header_links,
    launch_target,
    log_tail,
    search_terms,
    where_lines_are,
)

sys.path.insert(0, str(ROOT / "book" / "_ext"))
import course_site  # noqa: E402 (book/_ext is not a package)
import editions  # noqa: E402

pytestmark = [pytest.mark.site, pytest.mark.timeout(900)]

CHAPTER = MYST_FRONT_MATTER + """
(sec-tagged)=
# A chapter with an answer

Some math, $a^2 + b^2$.

```{{code-cell}} ipython3
import chapter_tools

print("library value:", chapter_tools.VALUE)
```

```{{code-cell}} ipython3
:tags: [{tag}]

def fixture_lrn_answer(values, n):
    window_sum = sum(v * v for v in values[:n])
    return values[0] / (1.0 + window_sum) ** 0.75
```

```{{code-cell}} ipython3
print("the next cell uses it:", round(fixture_lrn_answer([1.0, 2.0], 2), 4))
```
{extra}
"""

EXERCISES = """\
(sec-exercises)=
# Exercises

(exercise-lrn)=
## lrn

Write local response normalization yourself.
"""

#: the tracked modules of the small book: chapter_tools imports grader (in a function that never runs), so
#: the chapter depends on both
CHAPTER_TOOLS = "VALUE = 1\n\n\ndef later():\n    import grader\n\n    return grader\n"


def make_book(root: Path, *, tag: str = "answer-lrn", extra: str = "") -> Path:
    for name in ("_config.yml", "references.bib"):
        shutil.copy(ROOT / name, root / name)
    (root / "book").mkdir()
    for name in ("_static", "_templates", "_ext"):
        shutil.copytree(ROOT / "book" / name, root / "book" / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/tagged\n"
                                   "chapters:\n  - file: book/exercises\n")
    (root / "book" / "tagged.md").write_text(CHAPTER.format(tag=tag, extra=extra))
    (root / "book" / "exercises.md").write_text(EXERCISES)
    (root / "book" / "chapter_tools.py").write_text(CHAPTER_TOOLS)
    (root / "grader").mkdir()
    (root / "grader" / "__init__.py").write_text("RULES = 1\n")
    (root / "exercises" / "lrn").mkdir(parents=True)  # the assignments known to the book
    nbformat.write(nbformat.v4.new_notebook(), root / "exercises" / "lrn" / "lrn.ipynb")
    return root


def pointers(page: str, assignment: str) -> list[str]:
    """The class lists of the page's elements that point to ``assignment``'s exercise."""
    return [c for c in re.findall(r'class="([^"]*)"', page)
            if {"admonition", "course-answer", f"course-answer-{assignment}"} <= set(c.split())]


def executions(log: Path) -> tuple[int, int]:
    """(notebooks executed, notebooks taken from the cache) by the build whose log this is."""
    text = log.read_text(errors="replace")
    return text.count("Executed notebook in"), text.count("Using cached notebook")


@pytest.fixture(scope="module")
def small_book(tmp_path_factory):
    """The small book, built as `make site` and then `make site-solutions` do."""
    root = make_book(tmp_path_factory.mktemp("small-book"))
    student = build_book(root, root / "student.log", timeout=600)
    assert student.returncode == 0, log_tail(root / "student.log")
    solutions = build_edition(root, root / "solutions.log", "solutions", timeout=600)
    assert solutions.returncode == 0, log_tail(root / "solutions.log")
    return root


def test_site_small_book_answers_come_from_the_tags(small_book):
    answers, others = answer_cells(small_book)
    assert [(a.chapter, a.assignment) for a in answers] == [("book/tagged.html", "lrn")]
    lines = give_away_lines(answers, others)
    assert set(lines) == {"def fixture_lrn_answer(values, n):", "window_sum = sum(v * v for v in values[:n])",
                          "return values[0] / (1.0 + window_sum) ** 0.75"}
    # fixture_lrn_answer is used by the next cell: only window_sum is the answer's own
    assert answer_only_names(answers, small_book) == {"window_sum"}


def test_site_search_index_holds_the_answer_in_the_solutions_edition_only(small_book):
    assert "window_sum" not in search_terms(small_book / "_build" / "html")
    assert "window_sum" in search_terms(small_book / "_build" / "solutions" / "html")


def test_site_student_edition_hides_the_answer(small_book):
    html = small_book / "_build" / "html"
    assert (html / "EDITION").read_text() == "student"
    lines = give_away_lines(*answer_cells(small_book))
    found = {line: files for line, files in where_lines_are(html, lines).items() if files}
    assert not found, f"the student edition shows answer lines: {found}"

    page = (html / "book" / "tagged.html").read_text()
    assert len(pointers(page, "lrn")) == 1
    assert 'href="exercises.html#exercise-lrn"' in page, "the pointer must link the exercise's section"
    assert "the next cell uses it: 0.2608" in page, "the cells after the answer still run and show"

    # the download button's notebook: valid, the pointer and an empty cell where the answer was
    nb = nbformat.read(html / "_sources" / "book" / "tagged.ipynb", as_version=4)
    nbformat.validate(nb)
    sources = [c.source for c in nb.cells]
    assert any("**Exercise `lrn`.**" in s for s in sources)
    assert "# Exercise lrn: your code here" in sources
    assert not any("answer-lrn" in c.metadata.get("tags", []) for c in nb.cells)
    assert "Exercise `lrn`" in (html / "_sources" / "book" / "tagged.md").read_text()


def test_site_solutions_edition_shows_the_answer_from_the_same_cache(small_book):
    html = small_book / "_build" / "solutions" / "html"
    assert (html / "EDITION").read_text() == "solutions"
    lines = give_away_lines(*answer_cells(small_book))
    where = where_lines_are(html, lines)
    for line, files in where.items():
        # the page (code split into highlighted spans), the notebook and the Markdown source
        assert {"book/tagged.html", "_sources/book/tagged.ipynb", "_sources/book/tagged.md"} <= set(files), \
            (line, files)
    assert "course-answer" not in (html / "book" / "tagged.html").read_text()
    assert executions(small_book / "solutions.log") == (0, 1), "the second edition must not execute again"


def test_site_launch_and_download_links_open_the_editions_notebook(small_book):
    """Each launch link opens <path_to_book>/<page>.ipynb on the published branch: a file of that build."""
    config = editions.site_config(small_book)
    assert config["branch"] not in ("main", "master") and config["path_to_book"] == "_sources"
    for html in (small_book / "_build" / "html", small_book / "_build" / "solutions" / "html"):
        links = header_links(html / "book" / "tagged.html")
        for kind in ("binder", "jupyterhub", "colab"):
            assert len(links[kind]) == 1, (kind, links)
            branch, path = launch_target(links[kind][0], config["url"])
            assert (branch, path) == (config["branch"], "_sources/book/tagged.ipynb"), links[kind]
            nbformat.validate(nbformat.read(html / path, as_version=4))
        assert {Path(h).name for h in links["download"]} == {"tagged.ipynb", "tagged.md"}
        # what the notebook imports from its folder lies beside it, as in the book
        assert (html / "_sources" / "book" / "chapter_tools.py").read_text() == CHAPTER_TOOLS
        for href in links["download"]:
            assert (html / "book" / href).resolve().is_file(), href


LEAKS = {
    # a file holding the answer, shown by a directive
    "literalinclude": ("\n```{literalinclude} answer_copy.py\n```\n", 3),
    # a line of it quoted in the prose
    "prose": ("\nIts last line is `return values[0] / (1.0 + window_sum) ** 0.75`.\n", 1),
}


@pytest.mark.parametrize("leak", sorted(LEAKS))
def test_site_student_build_fails_when_an_answer_leaks(tmp_path, leak):
    """A chapter that shows an answer another way fails the student build, and no EDITION file vouches for
    what it wrote."""
    extra, n_lines = LEAKS[leak]
    root = make_book(tmp_path, extra=extra)
    answer = CHAPTER.split(":tags: [{tag}]\n\n", 1)[1].split("```", 1)[0]
    (root / "book" / "answer_copy.py").write_text(answer)
    proc = build_book(root, root / "build.log", timeout=600)
    log = (root / "build.log").read_text(errors="replace")
    assert proc.returncode != 0, "a student edition that shows an answer must fail"
    assert f"the student edition shows {n_lines} line(s) of exercise answers" in log, log[-3000:]
    assert "book/tagged.html" in log
    assert not (root / "_build" / "html" / "EDITION").exists()


def test_site_unknown_assignment_tag_fails_the_build(tmp_path):
    root = make_book(tmp_path, tag="answer-lrm")
    proc = build_book(root, root / "build.log", timeout=600)
    log = (root / "build.log").read_text(errors="replace")
    assert proc.returncode != 0
    assert "tag answer-lrm: no assignment 'lrm' (expected one of ['lrn'])" in log, log[-3000:]


def test_site_solutions_edition_refuses_the_student_place(tmp_path):
    root = make_book(tmp_path)
    config = root / "_config.yml"
    config.write_text(config.read_text().replace("course_edition: student", "course_edition: solutions"))
    proc = build_book(root, root / "build.log", timeout=600)
    assert proc.returncode != 0
    assert "the solutions edition must not be built into _build/html" in (root / "build.log").read_text()


@pytest.mark.slow
def test_site_cache_reexecutes_when_a_tracked_module_changes(tmp_path):
    root = make_book(tmp_path)
    tools, rules = root / "book" / "chapter_tools.py", root / "grader" / "__init__.py"
    page = root / "_build" / "html" / "book" / "tagged.html"

    def build(name: str) -> tuple[int, int]:
        proc = build_book(root, root / f"{name}.log", timeout=600)
        assert proc.returncode == 0, log_tail(root / f"{name}.log")
        return executions(root / f"{name}.log")

    assert build("cold") == (1, 0)
    assert build("unchanged") == (0, 0), "nothing changed: nothing is read again"
    tools.write_text(CHAPTER_TOOLS.replace("VALUE = 1", "VALUE = 2"))
    assert build("changed") == (1, 0), "a change to chapter_tools must execute the chapter again"
    assert "library value: 2" in page.read_text()
    rules.write_text("RULES = 2\n")
    assert build("imported") == (1, 0), "chapter_tools imports grader: a change there counts too"
    tools.touch()  # a new modification time alone is no change
    assert build("touched")[0] == 0, "a new modification time alone must not execute the chapter again"
    tools.write_text(CHAPTER_TOOLS)
    rules.write_text("RULES = 1\n")
    assert build("reverted") == (0, 1), "the first library's outputs are still in the cache"
    assert "library value: 1" in page.read_text()


def test_site_dependency_index_hashes_content_and_follows_imports(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "__init__.py").write_text("from .core import f\n")
    (tmp_path / "lib" / "core.py").write_text("import helper\n\ndef f():\n    return 1\n")
    (tmp_path / "lib" / "__pycache__").mkdir()
    (tmp_path / "lib" / "__pycache__" / "core.cpython-311.pyc").write_bytes(b"\x00compiled")
    (tmp_path / "helper.py").write_text("X = 1\n")
    index = course_site.DependencyIndex(tmp_path, {"lib": "lib", "helper": "helper.py", "gone": "nowhere"})
    assert index.closure(["lib"]) == ["helper", "lib"] and index.closure(["numpy"]) == []
    before = index.digest(["lib"])
    assert before and index.digest(["helper"]) != before and index.digest([]) == ""
    (tmp_path / "lib" / "__pycache__" / "core.cpython-311.pyc").write_bytes(b"\x00recompiled")
    assert index.digest(["lib"]) == before, "compiled files are not the source"
    (tmp_path / "helper.py").write_text("X = 2\n")
    assert index.digest(["lib"]) != before, "lib imports helper"


def test_site_imported_names():
    code = "%matplotlib inline\nimport numpy as np, tricksref.augment as A\nfrom chapter_tools import x\n" \
           "from . import local\n!pip list\nif True:\n    import grader.suite\n"
    assert course_site.imported_names(code) == {"numpy", "tricksref", "chapter_tools", "grader"}
    assert course_site.imported_names("import tricksref\nthis is not python(") == {"tricksref"}


def test_site_answer_tag_is_one_per_cell():
    cell = nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["hide-input", "answer-lrn"]})
    assert course_site.answer_assignment(cell) == "lrn"
    markdown = nbformat.v4.new_markdown_cell("x", metadata={"tags": ["answer-lrn"]})
    assert course_site.answer_assignment(markdown) is None
    with pytest.raises(ValueError, match="tags: a cell answers one exercise"):
        course_site.answer_assignment(nbformat.v4.new_code_cell("", metadata={"tags": ["answer-lrn",
                                                                                     "answer-dropout"]}))


# ---------------------------------------------------------------------------------------------------------
# publishing, against a local bare repository


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def course_repo(tmp_path):
    """A course repository with a main branch, and an empty bare repository standing for GitHub."""
    src, bare = tmp_path / "course", tmp_path / "public.git"
    src.mkdir()
    _git(src, "init", "--quiet", "--initial-branch=main")
    _git(src, "config", "user.name", "Course Staff")
    _git(src, "config", "user.email", "staff@example.edu")
    (src / "README.md").write_text("the course\n")
    _git(src, "add", "README.md")
    _git(src, "commit", "--quiet", "-m", "start")
    _git(tmp_path, "init", "--quiet", "--bare", str(bare))
    return src, bare


def test_site_publish_pushes_each_edition_to_gh_pages(small_book, course_repo):
    src, bare = course_repo
    config = editions.site_config(small_book)
    # the small book keeps _config.yml's placeholder links: a rehearsal, as an instructor's would be
    student = editions.publish("student", root=small_book, repo=src, remote=str(bare),
                               allow_placeholders=True)
    tree = set(_git(bare, "ls-tree", "-r", "--name-only", "gh-pages").split())
    assert {"index.html", "EDITION", ".nojekyll", "book/tagged.html", "_sources/book/tagged.ipynb",
            "_sources/book/chapter_tools.py"} <= tree
    assert _git(bare, "show", "gh-pages:EDITION") == "student"
    assert _git(bare, "rev-parse", "gh-pages").strip() == student
    # every launch link of every published page opens a notebook of the published branch
    for page in sorted(p for p in tree if p.endswith(".html")):
        for kind in ("binder", "jupyterhub", "colab"):
            for url in header_links(small_book / "_build" / "html" / page)[kind]:
                branch, path = launch_target(url, config["url"])
                assert branch == "gh-pages" and path in tree, (page, url)
    published = json.loads(_git(bare, "show", "gh-pages:_sources/book/tagged.ipynb"))
    assert "fixture_lrn_answer(values, n):" not in json.dumps(published)
    assert _git(src, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main", "the source branch is untouched"

    # after the deadline: the solutions edition on top, a fast-forward that students' clones can pull
    solutions = editions.publish("solutions", root=small_book, repo=src, remote=str(bare),
                                 allow_placeholders=True)
    assert _git(bare, "rev-parse", "gh-pages^").strip() == student
    assert _git(bare, "rev-parse", "gh-pages").strip() == solutions
    assert _git(bare, "show", "gh-pages:EDITION") == "solutions"
    assert "def fixture_lrn_answer(values, n):" in _git(bare, "show", "gh-pages:_sources/book/tagged.md")


def test_site_publish_refuses_the_wrong_site(small_book, course_repo, tmp_path):
    src, bare = course_repo

    def publish(edition="student", **kwargs):
        return editions.publish(edition, root=small_book, repo=src, remote=str(bare), allow_placeholders=True,
                                **kwargs)

    with pytest.raises(ValueError, match="holds the solutions edition, not the student edition"):
        publish(site=small_book / "_build" / "solutions" / "html")
    unmarked = tmp_path / "unmarked"
    shutil.copytree(small_book / "_build" / "html", unmarked)
    (unmarked / "EDITION").unlink()
    with pytest.raises(ValueError, match="unmarked"):
        publish(site=unmarked)
    with pytest.raises(ValueError, match="no built site"):
        publish(site=tmp_path / "nothing")
    with pytest.raises(ValueError, match="'main' is a source branch"):
        publish(branch="main")
    with pytest.raises(ValueError, match="edition: expected one of"):
        publish("teacher")
    with pytest.raises(ValueError, match="repository.url, launch_buttons.jupyterhub_url still hold the "
                                         "placeholders"):
        editions.publish("student", root=small_book, repo=src, remote=str(bare))
    assert _git(bare, "branch", "--list").strip() == "", "nothing was pushed"


def test_site_publish_accepts_a_configured_course(small_book, course_repo, tmp_path):
    """The placeholder check reads _config.yml: with the course's own addresses there, publishing goes."""
    src, bare = course_repo
    root = tmp_path / "configured"
    root.mkdir()
    config = (small_book / "_config.yml").read_text()
    for placeholder, real in (("https://github.com/cnn-tricks/cnn-tricks", "https://github.com/uni-x/cnn-course"),
                              ("https://jupyterhub.example.edu", "https://hub.uni-x.edu")):
        assert placeholder in config
        config = config.replace(placeholder, real)
    (root / "_config.yml").write_text(config)
    assert editions.site_config(root)["placeholders"] == []
    editions.publish("student", root=root, site=small_book / "_build" / "html", repo=src, remote=str(bare))
    assert _git(bare, "show", "gh-pages:EDITION") == "student"


def test_site_publish_command_line_reports_a_refusal(small_book, course_repo):
    src, bare = course_repo
    proc = subprocess.run([sys.executable, str(ROOT / "book" / "_ext" / "editions.py"), "publish",
                           "--edition", "student", "--branch", "main", "--remote", str(bare),
                           "--allow-placeholders"], cwd=src,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and re.search(r"publish: branch: 'main' is a source branch", proc.stderr)
