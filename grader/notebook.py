"""Read a student's notebook without running it: which assignment it is, and the code the grader runs.

The notebook is parsed as JSON (no kernel, nothing executed). Its graded code is, in notebook order, the
code cells that nbgrader's metadata marks as solutions (``solution: true``) and the locked read-only cells
the assignment provides (``locked: true, solution: false, grade: false``, e.g. the imports). Test cells
(``grade: true`` without ``solution``) and cells without nbgrader metadata (the student's scratch cells, the
self-check ``check(...)``) are not run: scores come from the grader's suites, never from the notebook.

A notebook that cannot be read (missing, not JSON, not a notebook, no cells) raises ``NotebookError`` with a
message meant for the student; the grader turns it into a score of 0, never a crash.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable

__all__ = ["NotebookError", "read", "assignment_of", "graded_cells", "extract", "extract_cells", "MAX_BYTES"]

#: a larger file is not read (a notebook full of images is a few MB; this bounds the grader's memory)
MAX_BYTES = 64 * 2**20

_MAGIC = re.compile(r"^(\s*)([%!].*)$")


class NotebookError(ValueError):
    """The notebook cannot be graded as such; ``str(exc)`` is the message for the student."""


def read(path: str | os.PathLike) -> dict:
    """Parse ``path`` as a Jupyter notebook (format 4: a dict with a ``cells`` list) or raise NotebookError.

    Plain JSON, checked by hand: importing nbformat costs seconds (its JSON-schema validator compiles
    grammars at import), more than grading a notebook. An old format-3 notebook is upgraded with nbformat.
    """
    try:
        size = os.path.getsize(path)
        if size > MAX_BYTES:
            raise NotebookError(f"the notebook file is {size >> 20} MB, more than the {MAX_BYTES >> 20} MB "
                                f"the grader reads (clear the outputs and submit again)")
        with open(path, "rb") as f:
            raw = f.read()
    except NotebookError:
        raise
    except OSError as exc:
        raise NotebookError(f"the notebook file could not be read: {exc.strerror or exc}") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise NotebookError("the notebook file is not UTF-8 text, so it is not a Jupyter notebook") from None
    except json.JSONDecodeError as exc:
        raise NotebookError(f"the notebook file is not valid JSON (line {exc.lineno}, column {exc.colno}: "
                            f"{exc.msg}): it may have been edited outside Jupyter or cut short") from None
    except RecursionError:
        raise NotebookError("the notebook file is not a Jupyter notebook (JSON nested too deeply)") from None
    if isinstance(data, dict) and data.get("nbformat") == 3 and "worksheets" in data:
        data = _upgrade(data)
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise NotebookError("the file is JSON but not a Jupyter notebook (it has no list of cells)")
    if not data["cells"]:
        raise NotebookError("the notebook has no cells")
    if not all(isinstance(c, dict) for c in data["cells"]):
        raise NotebookError("the notebook's cells are broken (a cell is not a JSON object)")
    if not isinstance(data.get("metadata", {}), dict):
        data["metadata"] = {}
    return data


def _upgrade(data: dict) -> dict:
    import nbformat

    try:
        return json.loads(nbformat.writes(nbformat.reads(json.dumps(data), as_version=4)))
    except Exception as exc:  # noqa: BLE001
        raise NotebookError(f"the notebook is in the old format 3 and could not be converted: "
                            f"{type(exc).__name__}") from None


def _candidates(nb, path) -> list[str]:
    found = []
    meta = nb.get("metadata", {}) if nb is not None else {}
    ng = meta.get("nbgrader") if isinstance(meta, dict) else None
    for value in ((ng or {}).get("assignment"), (ng or {}).get("assignment_id"), meta.get("assignment")
                  if isinstance(meta, dict) else None):
        if isinstance(value, str) and value:
            found.append(value)
    if path is not None:
        found.append(os.path.splitext(os.path.basename(os.fspath(path)))[0])
        parent = os.path.basename(os.path.dirname(os.path.abspath(os.fspath(path))))
        if parent:
            found.append(parent)
    if nb is not None:  # last: the solution cells' nbgrader ids, such as lrn_inter or dropout_forward
        cells = nb.get("cells") if isinstance(nb.get("cells"), list) else []
        solutions = (_nbgrader(c) for c in cells if isinstance(c, dict) and _nbgrader(c).get("solution"))
        found.extend(i for i in (ng.get("grade_id") for ng in solutions) if isinstance(i, str) and i)
    return found


def assignment_of(nb, path=None, known: Iterable[str] | None = None) -> str | None:
    """The notebook's assignment: nbgrader metadata if present, else the file name's stem.

    With ``known`` (the grader's assignments), a name that is not one of them is skipped for the next
    candidate (the folder, as in nbgrader's ``submitted/<student>/<assignment>/``, then the ids of the
    solution cells, ``lrn_inter`` for ``lrn``), and a renamed copy such as ``lrn-Copy1.ipynb`` or
    ``lrn (2).ipynb`` still maps to ``lrn``. Returns None when nothing matches.
    """
    cands = _candidates(nb, path)
    if known is None:
        return cands[0] if cands else None
    known = list(known)
    for c in cands:
        if c in known:
            return c
    for c in cands:
        for k in sorted(known, key=len, reverse=True):
            if re.match(rf"{re.escape(k)}(?![A-Za-z0-9])", c):
                return k
    return None


def _nbgrader(cell) -> dict:
    meta = cell.get("metadata") or {}
    ng = meta.get("nbgrader") if isinstance(meta, dict) else None
    return ng if isinstance(ng, dict) else {}


def _source(cell) -> str:
    src = cell.get("source", "")
    if isinstance(src, list):
        src = "".join(s for s in src if isinstance(s, str))
    return src if isinstance(src, str) else ""


def _without_magics(src: str) -> str:
    """IPython lines (``%timeit``, ``%%time``, ``!pip``) become comments: they are no Python."""
    return "\n".join(_MAGIC.sub(r"\1# \2", line) if _MAGIC.match(line) else line for line in src.split("\n"))


def is_graded(cell) -> bool:
    """A code cell the grader runs: a solution cell, or a locked cell that is neither test nor solution."""
    if cell.get("cell_type") != "code":
        return False
    ng = _nbgrader(cell)
    if ng.get("solution"):
        return True
    return bool(ng.get("locked")) and not ng.get("grade") and not ng.get("task")


def graded_cells(nb) -> list[tuple[int, str]]:
    """``[(cell number, source), ...]`` of the graded code cells, numbered from 1 in the notebook's order."""
    return [(i, _without_magics(_source(c))) for i, c in enumerate(nb["cells"], 1) if is_graded(c)]


def extract_cells(path, known: Iterable[str] | None = None) -> tuple[str | None, list[tuple[int, str]]]:
    """``(assignment, [(cell number, source), ...])``; raises ``NotebookError`` for an unreadable notebook."""
    nb = read(path)
    return assignment_of(nb, path, known), graded_cells(nb)


def extract(path, known: Iterable[str] | None = None) -> tuple[str | None, str]:
    """``(assignment, source)``: the graded code as one string, each cell after a ``# cell N`` line."""
    assignment, cells = extract_cells(path, known)
    return assignment, "\n\n".join(f"# cell {i}\n{src}" for i, src in cells)
