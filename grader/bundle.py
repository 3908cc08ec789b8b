"""The bundles: what students get before the deadline (the student edition) and after it (solutions).

``python -m grader bundle OUT [--edition student|solutions]`` (``make bundle``, ``make bundle-solutions``)
writes into ``OUT``:

- ``site/``: the built course site of that edition (``_build/html`` for the student edition, where every
  chapter cell that is an exercise's answer is replaced by a pointer; ``_build/solutions/html`` for the
  solutions edition), checked by the ``EDITION`` file the build writes;
- ``exercises/``: the assignments, as ``nbgrader generate_assignment`` released them;
- ``tricksref/``: the library. The student edition leaves out ``tricksref/scratch/``, the from-scratch
  computations of the four exercises: without it tricksref computes them through the very torch calls the
  exercises put off limits, so a copied answer earns nothing;
- ``grader/``: the self-check and the *visible* part of the grading suites, with their expected values frozen
  here as data (``grader.expected``): no reference computes them on a student's machine;
- ``pyproject.toml``, ``requirements.txt`` and ``README.md`` to install it (``pip install -e OUT``).

Never: ``solutions/``, ``grader/hidden/`` and ``grader/reference/`` (the hidden tests, the way their cases are
drawn, the known mistakes), nbgrader's ``gradebook.db``, the instructor's command line and sandbox. Files are
copied from an allow-list, and the finished bundle is searched for solution code (the solution notebooks'
lines: in the student edition, in every file, the library and the site's sources included), nbgrader's
solution and hidden-test markers and the hidden tests' names; any hit is an error and the bundle is removed.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import shutil
import sys
from pathlib import Path

__all__ = ["build", "leaks", "solution_lines", "hidden_test_names", "main"]

ROOT = Path(__file__).resolve().parent.parent

# grader modules a student needs for the self-check and the visible graded cells
_GRADER_FILES = ("__init__.py", "submission.py", "transport.py", "suite.py", "replies.py", "expected.py",
                 "policy.py", "guards.py", "check.py", "nbgrader_bridge.py")
EDITIONS = ("student", "solutions")
#: where each edition's built site is, relative to the repository
SITES = {"student": Path("_build/html"), "solutions": Path("_build/solutions/html")}
_GRADER_PACKAGES = ("suites", "probes")
_TEXT_SUFFIXES = {".py", ".ipynb", ".html", ".js", ".txt", ".md", ".json", ".toml", ".cfg", ".yml", ".yaml",
                  ".css", ".svg", ".csv", ".xml", ".tex", ".bib", ".c", ".h", ""}
_MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")

_PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "cnn-tricks-student"
version = "{version}"
description = "Practical tricks for training CNNs: the exercises, the reference library and the self-check."
requires-python = ">=3.11"
dependencies = ["torch>=2.4", "numpy>=1.26"]

[tool.setuptools.packages.find]
include = ["tricksref*", "grader*"]
"""

_README = """\
# Practical Training for CNNs: the student bundle

- `site/index.html`: the course (open it in a browser){site_note}.
- `exercises/<name>/<name>.ipynb`: the assignments: lrn, batchnorm, dropout, stagewise.
- `tricksref/`: the reference implementations the course uses{library_note}.
- `grader/`: the self-check. In an assignment's notebook, `from grader import check; check(lrn_inter)` runs
  the visible tests on your function and prints what passed and what did not. The graded score also counts
  hidden tests, which run when your notebook is graded.

Install once, from this folder (Python 3.11):

    python -m pip install -r requirements.txt
    python -m pip install -e .
    jupyter lab exercises/
"""


def _python_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.py") if p.is_file())


def _copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints",
                                                            "gradebook.db*", ".DS_Store"))


def solution_lines(root: Path = ROOT, min_length: int = 24) -> set[str]:
    """The code lines of the solution regions of ``solutions/*/*.ipynb`` (stripped, comments dropped).

    Short lines (``return out``) are left out: they say nothing about the solution and would match anything.
    """
    lines: set[str] = set()
    for path in sorted((root / "solutions").glob("*/*.ipynb")):
        nb = json.loads(path.read_text())
        for cell in nb.get("cells", []):
            src = cell.get("source", "")
            src = "".join(src) if isinstance(src, list) else src
            inside = False
            for line in src.splitlines():
                if "BEGIN SOLUTION" in line:
                    inside = True
                elif "END SOLUTION" in line:
                    inside = False
                elif inside:
                    code = line.split("#", 1)[0].strip()
                    if len(code) >= min_length:
                        lines.add(code)
    return lines


def hidden_test_names(root: Path = ROOT) -> set[str]:
    """The names of the hidden test functions (``grader/hidden/*.py``)."""
    names: set[str] = set()
    for path in _python_files(root / "grader" / "hidden"):
        tree = ast.parse(path.read_text())
        names |= {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}
    return names


def _text_files(folder: Path):
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix.lower() in _TEXT_SUFFIXES:
            try:
                yield path, path.read_text(errors="ignore")
            except OSError:
                continue


def leaks(folder: Path, root: Path = ROOT, *, code_lines: bool = True) -> list[str]:
    """What in ``folder`` must not reach students: one line per finding (empty when clean).

    Looks for nbgrader's solution and hidden-test markers, the hidden tests' names, a gradebook, a
    ``solutions``, ``grader/hidden`` or ``grader/reference`` folder, and (``code_lines``: the student edition)
    the code lines of the solution regions, in every file (the library and the site's sources included).
    """
    folder = Path(folder)
    found: list[str] = []
    never = ("solutions", "grader/hidden", "grader/reference", "gradebook.db") + (
        ("tricksref/scratch",) if code_lines else ())  # the student edition's library has no scratch/
    for bad in never:
        for hit in folder.rglob(Path(bad).name):
            if hit.relative_to(folder).as_posix().endswith(bad):
                found.append(f"{hit.relative_to(folder)}: must not be in the bundle")
    names = hidden_test_names(root)
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, sorted(names))) + r")\b") if names else None
    lines = solution_lines(root) if code_lines else set()
    for path, text in _text_files(folder):
        rel = path.relative_to(folder)
        for marker in _MARKERS:
            if marker in text:
                found.append(f"{rel}: contains nbgrader's marker {marker!r}")
        if pattern is not None and (m := pattern.search(text)):
            found.append(f"{rel}: names the hidden test {m.group(1)}")
        if lines:
            for line in lines:
                if line in text:
                    found.append(f"{rel}: contains solution code {line!r}")
                    break
    return found


def build(out: Path, root: Path = ROOT, *, edition: str = "student", site: bool = True,
          force: bool = False) -> list[Path]:
    """Write the bundle of ``edition`` into ``out``; return the top-level entries written.

    Raises ValueError if ``out`` exists (unless ``force``) or lies inside the repository's sources, or if the
    built site is of the other edition; RuntimeError (after removing ``out``) if the finished bundle leaks
    anything (see ``leaks``).
    """
    from .expected import freeze
    from .suite import ASSIGNMENTS

    if edition not in EDITIONS:
        raise ValueError(f"edition: expected one of {', '.join(EDITIONS)}, got {edition!r}")
    out, root = Path(out).resolve(), Path(root).resolve()
    if out == root or root in out.parents and out.relative_to(root).parts[0] not in ("dist", "_build"):
        raise ValueError(f"OUT: write the bundle outside the sources (e.g. dist/student), got {out}")
    if out.exists() and not force:
        raise ValueError(f"OUT: {out} exists; remove it or pass --force")
    html = root / SITES[edition]
    has_site = site and (html / "index.html").is_file()
    if has_site:
        built = (html / "EDITION").read_text().strip() if (html / "EDITION").is_file() else "unknown"
        if built != edition:
            raise ValueError(f"the site in {html} is the {built} edition, not the {edition} one: rebuild it "
                             f"({'make site' if edition == 'student' else 'make site-solutions'})")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    written = []
    try:
        if has_site:
            _copy_tree(html, out / "site")
            written.append(out / "site")
        _copy_tree(root / "exercises", out / "exercises")
        _copy_tree(root / "tricksref", out / "tricksref")
        if edition == "student":
            shutil.rmtree(out / "tricksref" / "scratch", ignore_errors=True)
        written += [out / "exercises", out / "tricksref"]
        grader = out / "grader"
        grader.mkdir()
        for name in _GRADER_FILES:
            shutil.copy2(root / "grader" / name, grader / name)
        for package in _GRADER_PACKAGES:
            (grader / package).mkdir()
            for path in _python_files(root / "grader" / package):
                shutil.copy2(path, grader / package / path.name)
        for assignment in ASSIGNMENTS:  # computed here, by the instructor's reference, once
            freeze(assignment, grader)
        written.append(grader)
        version = _version(root)
        (out / "pyproject.toml").write_text(_PYPROJECT.format(version=version))
        shutil.copy2(root / "requirements.txt", out / "requirements.txt")
        note = "" if has_site else " (not built when this bundle was made: run `make site` first)"
        library = (" (the student edition: the four exercises' computations go through the torch calls "
                   "the exercises put off limits)" if edition == "student" else "")
        (out / "README.md").write_text(_README.format(site_note=note, library_note=library))
        (out / "EDITION").write_text(edition + "\n")
        written += [out / "pyproject.toml", out / "requirements.txt", out / "README.md", out / "EDITION"]
        problems = leaks(out, root, code_lines=edition == "student")
        if problems:
            raise RuntimeError("the bundle would leak:\n  " + "\n  ".join(problems[:20]))
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return written


def _version(root: Path) -> str:
    match = re.search(r'^__version__\s*=\s*"([^"]+)"', (root / "tricksref" / "__init__.py").read_text(), re.M)
    return match.group(1) if match else "0.0.0"


def main(argv: list[str] | None = None) -> int:
    """``python -m grader bundle OUT [--edition student|solutions] [--no-site] [--force]``."""
    parser = argparse.ArgumentParser(
        prog="python -m grader bundle",
        description="Build a bundle for students: the site, exercises/, tricksref and the visible grading "
                    "suites; never solutions or hidden tests. The student edition (before the deadline) "
                    "holds no exercise's answer; the solutions edition (after it) has the from-scratch "
                    "library and the full site.")
    parser.add_argument("out", help="the folder to create (e.g. dist/student)")
    parser.add_argument("--edition", choices=EDITIONS, default="student",
                        help="student (default: before the deadline) or solutions (after it)")
    parser.add_argument("--no-site", action="store_true", help="leave the built site out")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    args = parser.parse_args(argv)
    try:
        written = build(Path(args.out), edition=args.edition, site=not args.no_site, force=args.force)
    except (ValueError, RuntimeError) as exc:
        print(f"bundle: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    if not any(p.name == "site" for p in written) and not args.no_site:
        make = "make site" if args.edition == "student" else "make site-solutions"
        print(f"note: the {args.edition} site is not built ({SITES[args.edition]}/index.html missing): run "
              f"`{make}` to include it", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
