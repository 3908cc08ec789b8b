"""The expected values of the visible tests: computed by the instructor's reference, shipped as data.

In the instructor's repository ``load(assignment)`` computes them with ``grader.reference.<assignment>``
(which uses ``tricksref``, the from-scratch library). The student bundle has neither: ``freeze`` writes them,
at release time, to ``grader/suites/expected/<assignment>.grt`` (a ``grader.transport`` message), and
``load`` reads that file, so that the self-check runs from the bundle alone and nothing students receive
computes an exercise's answer.
"""

from __future__ import annotations

import functools
import importlib
from pathlib import Path

from . import transport

__all__ = ["load", "freeze", "data_path"]


def data_path(assignment: str, root: Path | None = None) -> Path:
    """Where the frozen values of ``assignment`` live (under ``root``, a ``grader`` package folder)."""
    return (root or Path(__file__).resolve().parent) / "suites" / "expected" / f"{assignment}.grt"


@functools.cache
def load(assignment: str) -> dict:
    """The visible tests' expected values of ``assignment``: frozen data if shipped, else computed here."""
    path = data_path(assignment)
    if path.is_file():
        return transport.decode(path.read_bytes())
    try:
        module = importlib.import_module(f"grader.reference.{assignment}")
    except ImportError:
        raise RuntimeError(f"the expected values of {assignment}'s visible tests are missing "
                           f"({path} is not there): reinstall the course bundle") from None
    return module.visible_expected()


def freeze(assignment: str, root: Path) -> Path:
    """Write ``assignment``'s expected values, computed by the reference, under ``root`` (a copy of the
    ``grader`` package); return the file written."""
    module = importlib.import_module(f"grader.reference.{assignment}")
    path = data_path(assignment, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(transport.encode(module.visible_expected()))
    return path
