"""The course site's Sphinx extension: two editions, an execution cache keyed on the library, launch links.

Loaded by Jupyter Book through ``sphinx.local_extensions`` in ``_config.yml``. Three jobs:

**Editions.** A chapter cell that is an exercise's answer carries the tag ``answer-<assignment>`` (for
example ``:tags: [answer-lrn]`` on its ``{code-cell}``). Every cell runs in both editions, since later cells
may use what an answer cell computed; only what is published differs. The *student* edition (the default,
what ``make site`` builds into ``_build/html``) replaces each tagged cell on the page by a pointer to the
exercise, rewrites the chapter's downloadable ``.md`` and ``.ipynb`` under ``_sources/`` the same way, and
before it finishes searches every file it wrote for the tagged cells' code: a hit fails the build. The
*solutions* edition (``course_edition = "solutions"``, built by ``book/_ext/editions.py build --edition
solutions`` into ``_build/solutions/html``) shows everything. Each build writes ``EDITION`` (``student`` or
``solutions``) at the root of its output, and only once the build is complete and checked.

**Re-execution on library change.** myst-nb's execution cache (jupyter-cache) keys a notebook on its code
cells only, so a change to ``tricksref`` would not re-execute the chapters that show its results. Here the
key also holds a hash of every tracked module the notebook imports (``course_execution_dependencies``:
import name -> file or folder, relative to the book's root), followed through the modules' own imports
(``grader`` imports ``tricksref``, so the exercises chapter depends on both). Sphinx is told to re-read a
chapter whose dependencies' hash changed; the cache then misses and the chapter runs again. An unchanged
tree hits the cache, whatever the files' modification times, and going back to an earlier library finds
that library's outputs still cached.

**Launch links.** sphinx-book-theme builds the launch buttons from ``repository`` (``url``, ``branch``,
``path_to_book``) and ``launch_buttons`` in ``_config.yml``; for a MyST Markdown chapter it links the
``.md``, which Colab cannot open. Here every launch link names the chapter's executed notebook instead,
``<path_to_book>/<chapter>.ipynb``, which the theme copies to ``_sources/`` of the build (the download
button's file). With ``branch: gh-pages`` and ``path_to_book: _sources`` the buttons open the notebooks of
the published site itself: the student edition's stripped ones before the deadline, never the course's
main branch, which holds ``solutions/`` and the answer cells.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import html
import html.parser
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from docutils import nodes
from sphinx import addnodes
from sphinx.errors import ConfigError, ExtensionError
from sphinx.transforms import SphinxTransform
from sphinx.util import logging

LOGGER = logging.getLogger(__name__)

EDITIONS = ("student", "solutions")
EDITION_FILE = "EDITION"
ANSWER_TAG = re.compile(r"answer-([a-z][a-z0-9_]*)")
#: what a chapter imports -> where that module's sources are, relative to the book's root
DEFAULT_DEPENDENCIES = {"tricksref": "tricksref", "chapter_tools": "book/chapter_tools.py",
                        "grader": "grader"}
#: files the chapters import from their own folder: copied beside the notebooks under _sources/, so that a
#: notebook opened from the published branch (Binder, JupyterHub) finds them
DEFAULT_COMPANIONS = ["book/chapter_tools.py"]
#: the label of each assignment's section in the exercises chapter (book/exercises.md)
DEFAULT_EXERCISE_LABEL = "exercise-{assignment}"
#: an answer line this short ("return out", "import torch") says nothing about the answer
MIN_LINE = 16
_SKIP_PARTS = {"__pycache__", ".ipynb_checkpoints", ".pytest_cache", ".ruff_cache"}
_SKIP_SUFFIXES = {".pyc", ".pyo", ".so", ".o"}
_TEXT_SUFFIXES = {".html", ".htm", ".js", ".css", ".txt", ".md", ".ipynb", ".json", ".py", ".xml", ".svg",
                  ".inv", ".yml", ".yaml", ".bib", ".tex", ""}


# ---------------------------------------------------------------------------------------------------------
# chapters as notebooks, and their answer cells


def read_notebook(path: Path, text: str | None = None):
    """The chapter at ``path`` as an nbformat notebook (a MyST Markdown notebook through jupytext), or None
    when it is plain Markdown."""
    import jupytext
    import nbformat

    path = Path(path)
    text = path.read_text(encoding="utf-8") if text is None else text
    if path.suffix == ".ipynb":
        return nbformat.reads(text, as_version=4)
    if path.suffix != ".md" or not _is_notebook_markdown(text):
        return None
    return jupytext.reads(text, fmt="md:myst")


def _is_notebook_markdown(text: str) -> bool:
    # myst-nb's own test: a front matter with a kernelspec (or jupytext) makes a Markdown file a notebook
    from myst_nb.core.read import is_myst_markdown_notebook

    return is_myst_markdown_notebook(text)


def answer_assignment(cell) -> str | None:
    """The assignment a cell is the answer to (its ``answer-<assignment>`` tag), or None."""
    if cell.get("cell_type") != "code":
        return None
    found = [m.group(1) for tag in cell.get("metadata", {}).get("tags", []) or []
             if (m := ANSWER_TAG.fullmatch(str(tag)))]
    if len(found) > 1:
        raise ValueError(f"tags: a cell answers one exercise, got {found}")
    return found[0] if found else None


@dataclass
class Answer:
    """One tagged cell of a chapter."""

    docname: str
    index: int  # among the notebook's cells
    assignment: str
    source: str


def answers_in(nb, docname: str) -> list[Answer]:
    return [Answer(docname, i, a, cell.source) for i, cell in enumerate(nb.cells)
            if (a := answer_assignment(cell))]


def pointer_markdown(assignment: str) -> str:
    """What stands in a downloaded notebook where an answer cell was (plain Markdown: Jupyter renders it)."""
    return (f"> **Exercise `{assignment}`.** A cell here is the answer to the `{assignment}` assignment, so "
            f"the student edition of the course leaves it out: write it yourself in "
            f"`exercises/{assignment}/{assignment}.ipynb`. The cells below use what it defined; run them "
            "after the cell below holds your own version. The solutions edition shows it after the deadline.")


def strip_answers(nb):
    """A copy of ``nb`` with each answer cell replaced by the pointer and an empty code cell to write in."""
    import nbformat

    nb = copy.deepcopy(nb)
    cells = []
    for cell in nb.cells:
        assignment = answer_assignment(cell)
        if assignment is None:
            cells.append(cell)
            continue
        cells.append(nbformat.v4.new_markdown_cell(pointer_markdown(assignment)))
        cells.append(nbformat.v4.new_code_cell(f"# Exercise {assignment}: your code here"))
    nb.cells = cells
    for cell in nb.cells:
        cell.pop("id", None)  # fresh cells have ids and old ones may not: one convention for the file
    nb.nbformat_minor = min(nb.nbformat_minor, 4)
    return nb


# ---------------------------------------------------------------------------------------------------------
# finding an answer's code in a folder of built files


def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def distinctive_lines(answers: Iterable[Answer], other_code: Iterable[str]) -> dict[str, Answer]:
    """The lines of the answers that give them away: at least ``MIN_LINE`` characters, not a comment, and in
    no untagged code cell of any chapter (an import both share, a line the book shows anyway). The prose is
    no excuse: an answer's line quoted in a paragraph is a leak."""
    elsewhere = {_normal(line) for text in other_code for line in text.splitlines()}
    lines = {}
    for answer in answers:
        for line in answer.source.splitlines():
            key = _normal(line)
            if len(key) >= MIN_LINE and not key.startswith("#") and key not in elsewhere:
                lines.setdefault(key, answer)
    return lines


class _TextOnly(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data):
        self.parts.append(data)


def searchable_text(path: Path) -> str | None:
    """A file's text as a reader or a search engine meets it: an HTML page without its tags and entities,
    a notebook's cell sources and text outputs, any other text file as it is; None for binary files."""
    if path.suffix.lower() not in _TEXT_SUFFIXES:
        return None
    raw = path.read_bytes()
    if b"\x00" in raw[:4096]:
        return None
    text = raw.decode("utf-8", errors="replace")
    if path.suffix.lower() in (".html", ".htm"):
        parser = _TextOnly()
        parser.feed(text)
        return text + "\n" + "".join(parser.parts)  # raw as well: code inside attributes or scripts
    if path.suffix.lower() in (".ipynb", ".json"):
        try:
            data = json.loads(text)
        except ValueError:
            return text
        return text + "\n" + "\n".join(_strings(data))
    return html.unescape(text) + "\n" + text


def _strings(data) -> Iterable[str]:
    if isinstance(data, str):
        yield data
    elif isinstance(data, list):
        if data and all(isinstance(x, str) for x in data):
            yield "".join(data)  # a notebook stores a cell's source as a list of lines
        for x in data:
            yield from _strings(x)
    elif isinstance(data, dict):
        for key, value in data.items():
            if key not in ("image/png", "image/jpeg", "image/gif"):
                yield from _strings(value)


def find_lines(folder: Path, lines: Iterable[str]) -> dict[str, list[str]]:
    """For each (normalized) line, the files under ``folder`` whose text holds it."""
    lines = list(lines)
    found: dict[str, list[str]] = {line: [] for line in lines}
    if not lines:
        return found
    for path in sorted(Path(folder).rglob("*")):
        if not path.is_file():
            continue
        text = searchable_text(path)
        if text is None:
            continue
        text = _normal(text)
        for line in lines:
            if line in text:
                found[line].append(path.relative_to(folder).as_posix())
    return found


# ---------------------------------------------------------------------------------------------------------
# what a notebook's execution depends on


def imported_names(code: str) -> set[str]:
    """The top-level modules that ``code`` imports (``import a.b`` and ``from a.b import c`` give ``a``)."""
    # IPython's magics and shell escapes are not Python: blank them out, keeping the line numbers
    code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in code.splitlines())
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set(re.findall(r"^\s*(?:from|import)\s+([A-Za-z_]\w*)", code, re.M))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@dataclass
class DependencyIndex:
    """Content hashes of the tracked modules, and which tracked modules each one imports."""

    root: Path
    tracked: dict[str, str]
    _stat_cache: dict = field(default_factory=dict)

    def files(self, name: str) -> list[Path]:
        path = self.root / self.tracked[name]
        if path.is_file():
            return [path]
        if not path.is_dir():
            return []
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix not in _SKIP_SUFFIXES
                      and not _SKIP_PARTS.intersection(p.relative_to(path).parts)
                      and not any(part.endswith(".egg-info") for part in p.parts))

    def _file_digest(self, path: Path) -> tuple[str, set[str]]:
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        if key not in self._stat_cache:
            data = path.read_bytes()
            imports = imported_names(data.decode("utf-8", "replace")) if path.suffix == ".py" else set()
            self._stat_cache[key] = (hashlib.sha256(data).hexdigest(), imports)
        return self._stat_cache[key]

    def module(self, name: str) -> tuple[str, set[str]]:
        """(hash of the module's files, the other tracked modules it imports)."""
        digest, imports = hashlib.sha256(), set()
        base = self.root / self.tracked[name]
        for path in self.files(name):
            file_hash, file_imports = self._file_digest(path)
            rel = path.relative_to(base).as_posix() if path != base else path.name
            digest.update(f"{rel}\0{file_hash}\n".encode())
            imports |= file_imports
        return digest.hexdigest(), (imports & set(self.tracked)) - {name}

    def closure(self, names: Iterable[str]) -> list[str]:
        todo, seen = [n for n in names if n in self.tracked], set()
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(self.module(name)[1])
        return sorted(seen)

    def digest(self, names: Iterable[str]) -> str:
        """One hash over the tracked modules ``names`` and what they import; '' when there are none."""
        closure = self.closure(names)
        if not closure:
            return ""
        return hashlib.sha256("".join(f"{n}:{self.module(n)[0]}\n" for n in closure).encode()).hexdigest()

    def notebook_digest(self, nb) -> str:
        code = "\n".join(c.source for c in nb.cells if c.get("cell_type") == "code")
        return self.digest(imported_names(code))


_INDEX: DependencyIndex | None = None


def _keyed_cache_class():
    from jupyter_cache.cache.main import JupyterCacheBase

    class DependencyKeyedCache(JupyterCacheBase):
        """jupyter-cache whose key holds the hash of the tracked modules a notebook imports."""

        def create_hashed_notebook(self, nb, nb_metadata=("kernelspec",), cell_metadata=None):
            nb, key = super().create_hashed_notebook(nb, nb_metadata, cell_metadata)
            deps = _INDEX.notebook_digest(nb) if _INDEX is not None else ""
            if deps:
                key = hashlib.md5(f"{key}:{deps}".encode()).hexdigest()
            return nb, key

    return DependencyKeyedCache


def _install_keyed_cache() -> None:
    """myst-nb opens its cache through ``get_cache`` in one module; hand it the keyed cache there."""
    import functools

    import jupyter_cache
    from myst_nb.core.execute import cache as mystnb_cache

    if not hasattr(mystnb_cache, "get_cache"):
        raise ExtensionError("course_site: myst_nb.core.execute.cache.get_cache is gone; the execution "
                             "cache can no longer be keyed on the library (see book/_ext/course_site.py)")
    mystnb_cache.get_cache = functools.partial(jupyter_cache.get_cache, cache_cls=_keyed_cache_class())


# ---------------------------------------------------------------------------------------------------------
# Sphinx: reading


def _on_config_inited(app, config) -> None:
    if config.course_edition not in EDITIONS:
        raise ConfigError(f"course_edition: expected one of {EDITIONS}, got {config.course_edition!r}")
    if not isinstance(config.course_execution_dependencies, dict):
        raise ConfigError("course_execution_dependencies: expected a mapping of import name to a path "
                          f"relative to the book's root, got {config.course_execution_dependencies!r}")
    student_place = (Path(app.srcdir) / "_build" / "html").resolve()
    if config.course_edition == "solutions" and Path(app.outdir).resolve() == student_place:
        raise ConfigError("course_edition: the solutions edition must not be built into _build/html, the "
                          "student edition's place (`make site-solutions` builds it into "
                          "_build/solutions/html)")


def _on_builder_inited(app) -> None:
    global _INDEX
    _INDEX = DependencyIndex(Path(app.srcdir), dict(app.config.course_execution_dependencies))
    _install_keyed_cache()
    if not hasattr(app.env, "course_chapters"):
        app.env.course_chapters = {}
    # a stale EDITION would vouch for a build that has not finished (or failed its check)
    (Path(app.outdir) / EDITION_FILE).unlink(missing_ok=True)


def _on_source_read(app, docname: str, source: list[str]) -> None:
    """Note each chapter's answer cells, its other code, and the tracked modules it depends on."""
    path = Path(app.env.doc2path(docname))
    nb = read_notebook(path, source[0])
    if nb is None:
        app.env.course_chapters.pop(docname, None)
        return
    answers = answers_in(nb, docname)
    known = _assignments(app)
    for answer in answers:
        if known is not None and answer.assignment not in known:
            LOGGER.warning(f"tag answer-{answer.assignment}: no assignment {answer.assignment!r} "
                           f"(expected one of {sorted(known)})", location=(docname, None))
    answer_cells = {a.index for a in answers}
    others = [c.source for i, c in enumerate(nb.cells) if i not in answer_cells and c.cell_type == "code"]
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    modules = sorted(imported_names(code) & set(_INDEX.tracked))
    app.env.course_chapters[docname] = {
        "answers": [(a.index, a.assignment, a.source) for a in answers],
        "other_code": others,
        "modules": modules,
        "digest": _INDEX.digest(modules),
    }


def _assignments(app) -> set[str] | None:
    configured = app.config.course_assignments
    if configured is not None:
        return set(configured)
    folder = Path(app.srcdir) / "exercises"
    if not folder.is_dir():
        return None
    return {p.name for p in folder.iterdir() if (p / f"{p.name}.ipynb").is_file()} or None


def _on_env_get_outdated(app, env, added, changed, removed) -> list[str]:
    """Chapters whose tracked modules changed since they were read: read (and so execute) them again."""
    stale = []
    for docname, record in getattr(env, "course_chapters", {}).items():
        if docname in added or docname in changed or docname in removed:
            continue
        if _INDEX.digest(record["modules"]) != record["digest"]:
            stale.append(docname)
    if stale:
        LOGGER.info(f"course_site: the modules these chapters import changed, reading them again: {stale}")
    return stale


def _on_env_purge_doc(app, env, docname: str) -> None:
    getattr(env, "course_chapters", {}).pop(docname, None)


def _on_env_merge_info(app, env, docnames, other) -> None:
    env.course_chapters.update({d: other.course_chapters[d] for d in docnames if d in other.course_chapters})


class ReplaceAnswerCells(SphinxTransform):
    """In the student edition, each answer cell (input and outputs) gives way to a pointer to its exercise."""

    default_priority = 100  # before the collectors read the document's images and text

    def apply(self, **kwargs) -> None:
        if self.config.course_edition != "student":
            return
        for cell in list(self.document.findall(nodes.container)):
            if cell.get("nb_element") != "cell_code":
                continue
            assignment = answer_assignment({"cell_type": "code", "metadata": cell.get("cell_metadata", {})})
            if assignment is not None:
                # not replace_self, which would hand the cell's classes ("cell", "tag_...") to the pointer
                cell.parent.replace(cell, self._pointer(assignment, cell))

    def _pointer(self, assignment: str, cell: nodes.Element) -> nodes.Element:
        label = self.config.course_exercise_label.format(assignment=assignment)
        admonition = nodes.admonition(classes=["tip", "course-answer", f"course-answer-{assignment}"])
        admonition += nodes.title(text=f"Exercise {assignment}")
        para = nodes.paragraph()
        para += nodes.Text("The code of this step is the answer to the ")
        link = addnodes.pending_xref("", refdomain="std", reftype="ref", reftarget=label, refexplicit=True,
                                     refwarn=True, refdoc=self.env.docname)
        link += nodes.inline(text=f"{assignment} assignment")
        para += link
        para += nodes.Text(", so this edition leaves it out: write it yourself in ")
        para += nodes.literal(text=f"exercises/{assignment}/{assignment}.ipynb")
        para += nodes.Text(". The cells below ran with the course's own version. The solutions edition, "
                           "published after the deadline, shows it.")
        admonition += para
        admonition.source, admonition.line = cell.source, cell.line
        return admonition


# ---------------------------------------------------------------------------------------------------------
# Sphinx: writing


def _on_html_page_context(app, pagename, templatename, context, doctree) -> None:
    """Launch links name the chapter's notebook; a student edition's notebook loses its answers at once."""
    if not doctree:
        return
    notebook = Path(app.outdir) / "_sources" / f"{pagename}.ipynb"
    if app.config.course_edition == "student" and notebook.is_file():
        _strip_file(notebook)
    for group in context.get("header_buttons", []) or []:
        if group.get("label") != "launch-buttons":
            continue
        for button in group.get("buttons", []):
            if "url" in button:
                button["url"] = button["url"].replace(f"{pagename}.md", f"{pagename}.ipynb")


def _strip_file(path: Path) -> bool:
    """Rewrite a chapter's copy under _sources without its answers; True when it had any."""
    import jupytext
    import nbformat

    nb = read_notebook(path)
    if nb is None or not any(answer_assignment(c) for c in nb.cells):
        return False
    stripped = strip_answers(nb)
    if path.suffix == ".ipynb":
        path.write_text(nbformat.writes(stripped), encoding="utf-8")
    else:
        path.write_text(jupytext.writes(stripped, fmt="md:myst"), encoding="utf-8")
    return True


def _on_build_finished(app, exception) -> None:
    if app.builder.format != "html":
        return
    outdir = Path(app.outdir)
    edition = app.config.course_edition
    chapters = getattr(app.env, "course_chapters", {})
    for companion in app.config.course_notebook_companions:
        source, target = Path(app.srcdir) / companion, outdir / "_sources" / companion
        if source.is_file() and target.parent.is_dir():
            target.write_bytes(source.read_bytes())
    if edition == "student":
        sources = outdir / "_sources"
        for docname, record in chapters.items():
            if record["answers"] and sources.is_dir():
                for path in sources.glob(f"{docname}.*"):
                    _strip_file(path)
    if exception is not None:
        return
    answers = [Answer(d, i, a, s) for d, r in chapters.items() for i, a, s in r["answers"]]
    lines = distinctive_lines(answers, [t for r in chapters.values() for t in r["other_code"]])
    if edition == "student":
        leaks = {line: files for line, files in find_lines(outdir, lines).items() if files}
        if leaks:
            detail = "\n".join(f"  {lines[line].docname} (answer-{lines[line].assignment}): {line!r} in "
                               f"{', '.join(files[:3])}" for line, files in list(leaks.items())[:10])
            raise ExtensionError(f"the student edition shows {len(leaks)} line(s) of exercise answers:\n"
                                 f"{detail}\n(no EDITION file was written)")
    (outdir / EDITION_FILE).write_text(edition, encoding="utf-8")
    LOGGER.info(f"course_site: {edition} edition, {len(answers)} answer cell(s), {len(lines)} distinctive "
                f"line(s){' checked absent' if edition == 'student' else ''}; wrote {EDITION_FILE}")


def setup(app):
    # no environment variable chooses the edition: a stray one must not publish the answers
    app.add_config_value("course_edition", "student", "env", [str])
    app.add_config_value("course_assignments", None, "env")
    app.add_config_value("course_exercise_label", DEFAULT_EXERCISE_LABEL, "env", [str])
    app.add_config_value("course_execution_dependencies", DEFAULT_DEPENDENCIES, "env", [dict])
    app.add_config_value("course_notebook_companions", DEFAULT_COMPANIONS, "html", [list])
    app.connect("config-inited", _on_config_inited)
    app.connect("builder-inited", _on_builder_inited)
    app.connect("source-read", _on_source_read)
    app.connect("env-get-outdated", _on_env_get_outdated)
    app.connect("env-purge-doc", _on_env_purge_doc)
    app.connect("env-merge-info", _on_env_merge_info)
    app.add_transform(ReplaceAnswerCells)
    app.connect("html-page-context", _on_html_page_context, priority=600)  # after the theme's buttons (501)
    app.connect("build-finished", _on_build_finished, priority=900)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True, "env_version": 2}
