"""Probes of the ``batchnorm`` assignment.

``batchnorm_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5)
-> (out, cache)`` and ``batchnorm_backward(dout, cache) -> (dx, dgamma, dbeta)``.
"""

from __future__ import annotations

from ..guards import no_autograd
from ._common import attempt, pair, raw, student

FORWARD, BACKWARD = "batchnorm_forward", "batchnorm_backward"


def _forward(ns, c, x, gamma, beta, running_mean, running_var):
    kwargs = {k: c[k] for k in ("momentum", "eps") if c.get(k) is not None}
    result = student(ns, FORWARD, x, gamma, beta, running_mean, running_var, c["training"], **kwargs)
    return pair(FORWARD, result, 2, "(out, cache)")


def forward(ns, *, cases: list) -> dict:
    """``batchnorm_forward`` on each case: ``out``, and x, gamma, beta and the running statistics as they
    are after the call (the very tensors passed in)."""
    def one(c):
        out, _ = _forward(ns, c, c["x"], c["gamma"], c["beta"], c["running_mean"], c["running_var"])
        return {"out": raw(out), **{k: c[k] for k in ("x", "gamma", "beta", "running_mean", "running_var")}}

    return {"results": [attempt(FORWARD, lambda c=c: one(c)) for c in cases]}


def backward(ns, *, cases: list) -> dict:
    """A training forward, then ``batchnorm_backward(dout, cache)`` with autograd off limits, on each case;
    then the forward again at the moved inputs ``x_plus, gamma_plus, beta_plus`` and ``..._minus``, so that
    the grader can compare the backward with central differences of the student's own forward."""
    def one(c):
        def fresh(x, gamma, beta):  # copies: a forward that modifies its inputs must not spoil the others
            return _forward(ns, c, x.clone(), gamma.clone(), beta.clone(), c["running_mean"].clone(),
                            c["running_var"].clone())

        out, cache = fresh(c["x"], c["gamma"], c["beta"])
        with no_autograd(BACKWARD):
            grads = student(ns, BACKWARD, c["dout"].clone(), cache)
        dx, dgamma, dbeta = pair(BACKWARD, grads, 3, "(dx, dgamma, dbeta)")
        plus, _ = fresh(c["x_plus"], c["gamma_plus"], c["beta_plus"])
        minus, _ = fresh(c["x_minus"], c["gamma_minus"], c["beta_minus"])
        return {"out": raw(out), "dx": raw(dx), "dgamma": raw(dgamma), "dbeta": raw(dbeta),
                "out_plus": raw(plus), "out_minus": raw(minus)}

    return {"results": [attempt(FORWARD, lambda c=c: one(c)) for c in cases]}
