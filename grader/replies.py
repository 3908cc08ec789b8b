"""The grader trusts no reply: every probe reply is checked against what the grader sent before it is used.

A probe's reply comes out of the student's process, so it is the student's output, whatever the probe's code
says it should be. ``validate`` checks it against a ``Spec`` and the cases the grader sent: exactly one result
per case; each result either a value with exactly the spec's keys or an error of a known kind; every echoed
input a tensor of the shape and dtype that was sent; every output a tensor, None, or the description of
another type. Anything else raises ``ProbeInterference``, and the test that asked scores 0 with its message.
The evidence a test relies on (finite differences, whether an input changed, the step sizes used) is then
computed by the grader from these raw outputs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import torch

from .submission import ProbeInterference

__all__ = ["Spec", "Case", "validate", "ECHO", "OUT", "OUTS", "ERROR_KINDS"]

#: a student output: a tensor, None, or ``{"type": name}`` for anything else it returned
OUT = "out"
#: a list of student outputs (the iterates), or one output (what was returned instead of a list)
OUTS = "outs"


def ECHO(key: str) -> tuple[str, str]:  # noqa: N802 - reads as a constant in a spec
    """An input of the case as it is after the call: a tensor of the shape and dtype of ``case[key]``."""
    return ("echo", key)


ERROR_KINDS = frozenset({"raised", "not_implemented", "refused", "missing", "forbidden", "bad_return",
                         "error", "bad_output", "timeout", "crash"})
_TYPE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,99}")
_CELL = re.compile(r"<cell \d{1,6}>")
_MAX_LIST = 1000


class Spec:
    """What one probe's per-case value must hold: ``{key: OUT | OUTS | ECHO(case key)}``."""

    def __init__(self, fields: Mapping[str, object]):
        self.fields = dict(fields)


class Case:
    """One validated case result: ``value`` (a dict with the spec's keys) or ``error`` (a checked dict)."""

    __slots__ = ("value", "error")

    def __init__(self, value: dict | None, error: dict | None):
        self.value, self.error = value, error

    @property
    def ok(self) -> bool:
        return self.error is None

    def __getitem__(self, key):
        return self.value[key]


def _out(x, where: str):
    if x is None or isinstance(x, torch.Tensor):
        return x
    if isinstance(x, dict) and set(x) == {"type"} and isinstance(x["type"], str) \
            and _TYPE_NAME.fullmatch(x["type"]):
        return x
    raise ProbeInterference(f"{where}: not a tensor, None or a type description")


def _value(v, spec: Spec, case: Mapping, where: str) -> dict:
    if not isinstance(v, dict) or set(v) != set(spec.fields):
        raise ProbeInterference(f"{where}: expected the keys {sorted(spec.fields)}")
    out = {}
    for key, kind in spec.fields.items():
        x = v[key]
        if kind == OUT:
            out[key] = _out(x, f"{where}.{key}")
        elif kind == OUTS:
            if isinstance(x, list):
                if len(x) > _MAX_LIST:
                    raise ProbeInterference(f"{where}.{key}: more than {_MAX_LIST} items")
                out[key] = [_out(i, f"{where}.{key}[]") for i in x]
            else:
                out[key] = _out(x, f"{where}.{key}")
        elif isinstance(kind, tuple) and kind[0] == "echo":
            sent = case[kind[1]]
            if not (isinstance(x, torch.Tensor) and x.shape == sent.shape and x.dtype == sent.dtype):
                raise ProbeInterference(f"{where}.{key}: not the input the grader sent (shape or dtype)")
            out[key] = x
        else:  # pragma: no cover - a spec of the grader's own
            raise ValueError(f"spec: unknown kind {kind!r} for {key!r}")
    return out


def _error(e, functions: Sequence[str], refusals: int, where: str) -> dict:
    if not isinstance(e, dict) or e.get("kind") not in ERROR_KINDS or e.get("function") not in functions:
        raise ProbeInterference(f"{where}: a malformed error")
    kind = e["kind"]
    checked = {"kind": kind, "function": e["function"]}
    if kind == "raised":
        typ, msg, frames = e.get("type"), e.get("message"), e.get("where")
        if not (isinstance(typ, str) and _TYPE_NAME.fullmatch(typ) and isinstance(msg, str)
                and isinstance(frames, list) and len(frames) <= 5):
            raise ProbeInterference(f"{where}: a malformed error")
        for f in frames:
            if not (isinstance(f, list) and len(f) == 2 and isinstance(f[0], str) and _CELL.fullmatch(f[0])
                    and isinstance(f[1], int) and 0 < f[1] < 10**6):
                raise ProbeInterference(f"{where}: a malformed error location")
        checked.update(type=typ, message=msg[:1000], where=[tuple(f) for f in frames])
    elif kind == "refused":
        index = e.get("index")
        if not (isinstance(index, int) and 0 <= index < refusals):
            raise ProbeInterference(f"{where}: an error naming a refusal the grader did not make")
        checked["index"] = index
    elif kind == "bad_return":
        typ, n = e.get("type"), e.get("len")
        if not (isinstance(typ, str) and _TYPE_NAME.fullmatch(typ) and (n is None or isinstance(n, int))):
            raise ProbeInterference(f"{where}: a malformed error")
        checked.update(type=typ, len=n)
    elif kind != "not_implemented":
        msg = e.get("message")
        if not isinstance(msg, str):
            raise ProbeInterference(f"{where}: a malformed error")
        checked["message"] = msg[:1000]
    return checked


def validate(reply, cases: Sequence[Mapping], spec: Spec, functions: Sequence[str], *, refusals: int = 0
             ) -> list[Case]:
    """The reply of a probe run on ``cases``, checked (see the module's doc); raises ``ProbeInterference``."""
    if not isinstance(reply, dict) or set(reply) != {"results"}:
        raise ProbeInterference("the reply is not {'results': [...]}")
    results = reply["results"]
    if not isinstance(results, list) or len(results) != len(cases):
        n = len(results) if isinstance(results, list) else "no"
        raise ProbeInterference(f"{n} results for the {len(cases)} cases the grader sent")
    out = []
    for i, (r, case) in enumerate(zip(results, cases, strict=True)):
        where = f"case {i + 1}"
        if not isinstance(r, dict) or len(r) != 1 or not ({"value", "error"} >= set(r)):
            raise ProbeInterference(f"{where}: neither a value nor an error")
        if "value" in r:
            out.append(Case(_value(r["value"], spec, case, where), None))
        else:
            out.append(Case(None, _error(r["error"], functions, refusals, where)))
    return out


def finite_float(x) -> bool:
    return isinstance(x, float) and math.isfinite(x)
