"""Probes of ``toy``, a tiny assignment of the sandbox's own tests (loaded by the fork server from this file).

The student writes ``scale(x, c)`` (returns ``x * c``) and, for the isolation tests, ``f(*args)`` that
returns whatever it found out, as plain data.
"""

from grader.submission import call


def scale(ns, *, x, c):
    before = x.clone()
    out = call(ns, "scale", x, c)
    return {"out": out, "modified": bool((before != x).any())}


def value(ns, *, name="f", args=()):
    return {"value": call(ns, name, *args)}
