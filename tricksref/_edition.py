"""Which edition of the four exercise computations runs: the solutions edition's from-scratch code
(:mod:`tricksref.scratch`) or the student edition's calls of torch's own operators (:mod:`tricksref.student`).

``tricksref.scratch`` is used when it can be imported and ``TRICKSREF_EDITION`` is not ``student``; the
student bundle ships tricksref without that folder, so it runs the student edition without being told.
``TRICKSREF_EDITION=solutions`` insists on the from-scratch code (an ImportError where it is absent); any
other value is an error. Read once, when tricksref is imported. :data:`EDITION` says which one was chosen.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
from types import ModuleType

_PACKAGE_PATH = [os.path.dirname(os.path.abspath(__file__))]  # this copy of tricksref's folder

__all__ = ["ENV_EDITION", "EDITION", "implementation"]

ENV_EDITION = "TRICKSREF_EDITION"


def _choose() -> str:
    wanted = os.environ.get(ENV_EDITION, "").strip().lower()
    if wanted not in ("", "solutions", "student"):
        raise ValueError(f"{ENV_EDITION}: expected 'solutions', 'student' or unset, got "
                         f"{os.environ[ENV_EDITION]!r}")
    if wanted == "student":
        return "student"
    # looked for in this package's own folder only: an editable install's finder would find the
    # repository's scratch/ for a copy of tricksref that has none
    if importlib.machinery.PathFinder.find_spec("tricksref.scratch", _PACKAGE_PATH) is None:
        if wanted == "solutions":
            raise ImportError(f"{ENV_EDITION}=solutions: this copy of tricksref has no tricksref/scratch "
                              f"(it is the student edition)")
        return "student"
    importlib.import_module("tricksref.scratch")
    return "solutions"


#: "solutions" (from-scratch code) or "student" (through torch's own operators)
EDITION = _choose()


def implementation(name: str) -> ModuleType:
    """The module of this edition that computes ``name`` (lrn, batchnorm, dropout, schedules)."""
    package = "scratch" if EDITION == "solutions" else "student"
    return importlib.import_module(f"tricksref.{package}.{name}")
