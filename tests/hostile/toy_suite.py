"""``toy``: a suite with the interface of ``grader.suite`` (ASSIGNMENTS, max_score, run_suite, prepare).

Used by the sandbox's and the CLI's tests so that they do not depend on the course's real assignments.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from grader.policy import BASE_MODULES, Policy
from grader.submission import StudentError

ASSIGNMENTS = ("toy",)


def policy(assignment):
    """The rules of the course's assignments, and ``time`` (the course-mode tests' slow submissions)."""
    return Policy(assignment, modules=BASE_MODULES | {"time"})


@dataclass
class TestResult:
    name: str
    points: float
    max_points: float
    passed: bool
    message: str

    __test__ = False

    def to_json(self):
        return {"name": self.name, "points": self.points, "max_points": self.max_points,
                "passed": self.passed, "message": self.message}


def _values(sub):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, generator=g)
    out = sub.run("toy.scale", x=x, c=2.5)
    got = out["out"]
    assert isinstance(got, torch.Tensor) and got.shape == x.shape, "scale must return a tensor of x's shape"
    assert torch.allclose(got.double(), (x * 2.5).double()), "scale(x, c) is not x * c"


def _unmodified(sub):
    x = torch.ones(5)
    out = sub.run("toy.scale", x=x, c=3.0)
    assert torch.equal(x, torch.ones(5)), "the grader's own input changed (must never happen)"
    assert out["modified"] is False, "scale modified its input x in place"
    assert torch.allclose(out["out"], torch.full((5,), 3.0)), "scale(x, c) is not x * c"


TESTS = [("test_toy_values", 2.0, _values), ("test_toy_unmodified", 1.0, _unmodified)]
HIDDEN = {"test_toy_unmodified"}  # in the toy notebook, the unmodified cell is a hidden test


@dataclass(frozen=True)
class Test:
    name: str
    visible: bool

    __test__ = False


def tests(assignment):
    return [Test(name, name not in HIDDEN) for name, _, _ in TESTS]


def max_score(assignment):
    return sum(p for _, p, _ in TESTS)


def prepare(assignment):
    pass


def run_suite(assignment, sub, *, visible_only=False):
    results = []
    for name, pts, fn in TESTS:
        try:
            fn(sub)
        except StudentError as exc:
            results.append(TestResult(name, 0.0, pts, False, f"{exc.kind}: {exc.message}"))
        except AssertionError as exc:
            results.append(TestResult(name, 0.0, pts, False, str(exc)))
        else:
            results.append(TestResult(name, pts, pts, True, ""))
    return results
