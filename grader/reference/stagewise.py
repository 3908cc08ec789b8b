"""References of the ``stagewise`` suites: tricksref's two-loop SGD on the cases' gradient functions, and the
iterates of the known mistakes the messages recognise (here only: they are the answer, one edit away)."""

from __future__ import annotations

from grader.probes.stagewise import make_grad_fn


def reference(c: dict) -> list:
    """The S*T iterates of two-loop SGD on case ``c`` (``w0, spec, stage_lrs, T``)."""
    from tricksref.schedules import stagewise_sgd

    return stagewise_sgd(c["w0"].clone(), make_grad_fn(c["spec"]), c["stage_lrs"], c["T"])


def variant(c: dict, kind: str) -> list:
    """The iterates of a known mistake: ``"restart"`` (the step counter restarts at each stage), ``"from1"``
    (it starts at 1), ``"first_lr"`` (every stage uses the first step size)."""
    if kind not in ("restart", "from1", "first_lr"):
        raise ValueError(f"kind: expected 'restart', 'from1' or 'first_lr', got {kind!r}")
    grad_fn = make_grad_fn(c["spec"])
    w, out, step = c["w0"].clone(), [], 0
    for s, eta in enumerate(c["stage_lrs"]):
        for t in range(c["T"]):
            k = t if kind == "restart" else step + 1 if kind == "from1" else step
            w = w - (c["stage_lrs"][0] if kind == "first_lr" and s else eta) * grad_fn(w, k)
            out.append(w)
            step += 1
    return out


def variants(c: dict) -> dict:
    return {kind: variant(c, kind) for kind in ("restart", "from1", "first_lr")}


def visible_expected() -> dict:
    """The expected iterates of the visible tests' cases (``grader.expected`` ships them as data)."""
    from grader.suites import stagewise as visible

    return {"iterates": [reference(c) for c in visible.VISIBLE], "variants": variants(visible.STEPS)}
