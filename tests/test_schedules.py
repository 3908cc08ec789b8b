"""Stagewise and restart training: tricksref.schedules against closed forms and torch's own schedulers."""

from __future__ import annotations

import io
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.optim import lr_scheduler as torch_sched

from tricksref.schedules import (
    SGDR,
    CosineLR,
    LinearWarmupLR,
    StagewiseLR,
    scaled_lr,
    sgd,
    stagewise_sgd,
)

F64 = torch.float64


# ----------------------------------------------------------------------------------------------------
# helpers

def quadratic(device, n=5, seed=0):
    """f(w) = 1/2 sum_i a_i (w_i - w*_i)^2, gradient a * (w - w*): a step multiplies w - w* by 1 - eta a."""
    g = torch.Generator().manual_seed(seed)
    a = (torch.rand(n, generator=g, dtype=F64) * 1.5 + 0.1).to(device)
    w_star = torch.randn(n, generator=g, dtype=F64).to(device)
    w0 = torch.randn(n, generator=g, dtype=F64).to(device)
    return a, w_star, w0


def closed_form_iterates(a, w_star, w0, stage_lrs, Ts):
    """w_k - w* = prod over the first k steps of (1 - eta_{s(j)} a) * (w0 - w*), via powers per stage."""
    out = []
    done = torch.ones_like(a)  # product over the completed stages
    for eta, T in zip(stage_lrs, Ts, strict=True):
        factor = 1 - eta * a
        for t in range(1, T + 1):
            out.append(w_star + done * factor.pow(t) * (w0 - w_star))
        done = done * factor.pow(T)
    return out


def make_optimizer(lrs=(0.1,), device="cpu"):
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1, device=device))], "lr": lr} for lr in lrs]
    return torch.optim.SGD(groups, lr=lrs[0])


def run_lrs(sched, n):
    """The learning rates of the first n updates (one list per update, one entry per group)."""
    out = []
    for _ in range(n):
        out.append([g["lr"] for g in sched.optimizer.param_groups])
        sched.optimizer.step()  # no gradients: changes nothing, keeps torch's call-order check quiet
        sched.step()
    return out


def assert_lrs_close(ours, theirs, rtol=1e-12):
    assert len(ours) == len(theirs)
    for t, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        for x, y in zip(a, b, strict=True):
            assert x == pytest.approx(y, rel=rtol, abs=1e-300), f"step {t}: ours {x}, expected {y}"


# ----------------------------------------------------------------------------------------------------
# stagewise_sgd: the lecture's two-loop algorithm

def test_stagewise_sgd_matches_quadratic_closed_form(device):
    a, w_star, w0 = quadratic(device)
    stage_lrs, T = [0.9, 0.3, 0.05], 7
    ws = stagewise_sgd(w0, lambda w, step: a * (w - w_star), stage_lrs, T)
    expected = closed_form_iterates(a, w_star, w0, stage_lrs, [T] * 3)
    assert len(ws) == 3 * T
    for k, (w, e) in enumerate(zip(ws, expected, strict=True)):
        assert w.device == w0.device and w.dtype == F64
        torch.testing.assert_close(w, e, rtol=1e-12, atol=1e-14, msg=f"iterate {k}")


@settings(max_examples=40, deadline=None)
@given(stage_lrs=st.lists(st.floats(0.01, 1.0), min_size=1, max_size=4),
       T=st.integers(1, 6), n=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_stagewise_sgd_closed_form_random_stages(stage_lrs, T, n, seed):
    a, w_star, w0 = quadratic("cpu", n=n, seed=seed)
    ws = stagewise_sgd(w0, lambda w, step: a * (w - w_star), stage_lrs, T)
    expected = closed_form_iterates(a, w_star, w0, stage_lrs, [T] * len(stage_lrs))
    assert len(ws) == len(stage_lrs) * T
    for w, e in zip(ws, expected, strict=True):
        torch.testing.assert_close(w, e, rtol=1e-11, atol=1e-13)


def test_stagewise_sgd_first_and_last_step_of_each_stage(device):
    # a constant gradient of ones: each update subtracts exactly the step size it used (powers of two: exact)
    stage_lrs, T = [0.5, 0.125, 0.03125], 4
    w0 = torch.zeros(3, dtype=F64, device=device)
    ws = stagewise_sgd(w0, lambda w, step: torch.ones_like(w), stage_lrs, T)
    prev = [w0] + ws[:-1]
    used = [(p - w)[0].item() for p, w in zip(prev, ws, strict=True)]
    for s, eta in enumerate(stage_lrs):
        first, last = s * T, (s + 1) * T - 1
        assert used[first] == eta, f"first step of stage {s} used {used[first]}, expected eta_s = {eta}"
        assert used[last] == eta, f"last step of stage {s} used {used[last]}, expected eta_s = {eta}"
    assert used == [eta for eta in stage_lrs for _ in range(T)]


def test_stagewise_sgd_step_counter_and_iterates_passed(device):
    seen = []

    def grad_fn(w, step):
        seen.append((step, w.clone()))
        return torch.full_like(w, float(step + 1))  # depends on the step, so a wrong counter changes the path

    w0 = torch.tensor([1.0, -2.0], dtype=F64, device=device)
    ws = stagewise_sgd(w0, grad_fn, [0.25, 0.5], iters_per_stage=3)
    assert [s for s, _ in seen] == list(range(6))
    for k, (_, w_in) in enumerate(seen):
        torch.testing.assert_close(w_in, w0 if k == 0 else ws[k - 1], rtol=0, atol=0)
    etas = [0.25] * 3 + [0.5] * 3
    expected = w0 - sum(eta * (k + 1) for k, eta in enumerate(etas))
    torch.testing.assert_close(ws[-1], expected, rtol=0, atol=1e-15)


def test_stagewise_sgd_leaves_w0_untouched(device):
    w0 = torch.tensor([0.5, 1.5, -1.0], dtype=F64, device=device, requires_grad=True)
    before = w0.detach().clone()

    def careless_grad_fn(w, step):
        w.mul_(2.0)  # modifies its argument in place: must still never reach w0
        return torch.ones_like(w)

    stagewise_sgd(w0, careless_grad_fn, [0.1, 0.01], 2)
    ws = stagewise_sgd(w0, lambda w, step: w, [0.1, 0.01], 2)
    assert torch.equal(w0.detach(), before)
    assert w0.requires_grad and w0.grad is None
    assert all(not w.requires_grad for w in ws)


def test_stagewise_sgd_returns_separate_tensors(device):
    w0 = torch.zeros(4, device=device)  # float32 stays float32
    ws = stagewise_sgd(w0, lambda w, step: torch.ones_like(w), [1.0, 2.0], 3)
    assert len(ws) == 6 and all(w.dtype == torch.float32 and w.device == w0.device for w in ws)
    assert len({w.data_ptr() for w in ws}) == 6
    ws[0].fill_(100.0)
    assert ws[1][0].item() == -2.0


def test_stagewise_sgd_per_stage_lengths(device):
    a, w_star, w0 = quadratic(device)
    stage_lrs, Ts = [0.8, 0.2, 0.1], [2, 5, 1]
    ws = stagewise_sgd(w0, lambda w, step: a * (w - w_star), stage_lrs, Ts)
    expected = closed_form_iterates(a, w_star, w0, stage_lrs, Ts)
    assert len(ws) == sum(Ts)
    for w, e in zip(ws, expected, strict=True):
        torch.testing.assert_close(w, e, rtol=1e-12, atol=1e-14)


def test_sgd_is_stagewise_with_one_stage(device):
    a, w_star, w0 = quadratic(device)
    ws = sgd(w0, lambda w, t: a * (w - w_star), lr=0.3, iters=9)
    assert len(ws) == 9
    for w, e, v in zip(ws, closed_form_iterates(a, w_star, w0, [0.3], [9]),
                       stagewise_sgd(w0, lambda w, t: a * (w - w_star), [0.3], 9), strict=True):
        torch.testing.assert_close(w, e, rtol=1e-12, atol=1e-14)
        assert torch.equal(w, v)


def test_stagewise_sgd_restart_beats_one_loop_on_noisy_quadratic():
    # the lecture's point: for the same budget of steps, a large step size first (fast progress from far away)
    # then a small one (a lower noise floor) ends closer to w* than either step size alone
    T, stage_lrs = 100, [0.5, 0.02]
    final = {"two-loop": [], "large eta": [], "small eta": []}
    for seed in range(10):
        g = torch.Generator().manual_seed(seed)
        a = torch.rand(20, generator=g, dtype=F64) * 0.8 + 0.2
        w_star = torch.randn(20, generator=g, dtype=F64)
        w0 = w_star + 10 * torch.randn(20, generator=g, dtype=F64)
        noise = torch.randn(2 * T, 20, generator=g, dtype=F64)

        def grad_fn(w, step, a=a, w_star=w_star, noise=noise):  # G_t: true gradient plus noise drawn by step
            return a * (w - w_star) + noise[step]

        for key, ws in (("two-loop", stagewise_sgd(w0, grad_fn, stage_lrs, T)),
                        ("large eta", sgd(w0, grad_fn, stage_lrs[0], 2 * T)),
                        ("small eta", sgd(w0, grad_fn, stage_lrs[1], 2 * T))):
            final[key].append((ws[-1] - w_star).norm().item())
    mean = {k: sum(v) / len(v) for k, v in final.items()}
    assert mean["two-loop"] < 0.6 * min(mean["large eta"], mean["small eta"]), mean


@pytest.mark.parametrize("stage_lrs", [[0.5, 0.125, 0.03125], [0.3, 0.07, 0.011]])
def test_stagewise_sgd_matches_torch_sgd_with_stagewise_lr(device, stage_lrs):
    a, w_star, w0 = quadratic(device)
    T = 5
    ws = stagewise_sgd(w0, lambda w, step: a * (w - w_star), stage_lrs, T)

    w = torch.nn.Parameter(w0.clone())
    opt = torch.optim.SGD([w], lr=1.0)
    sched = StagewiseLR(opt, stage_lrs=stage_lrs, iters_per_stage=T)
    for k in range(3 * T):
        opt.zero_grad()
        (0.5 * (a * (w - w_star) ** 2).sum()).backward()
        opt.step()
        sched.step()
        if all(math.log2(eta).is_integer() for eta in stage_lrs):
            # eta a power of two: eta * G_t is exact, so torch's fused add(G, alpha=-eta) rounds as we do
            assert torch.equal(w.detach(), ws[k]), f"iterate {k}"
        else:
            torch.testing.assert_close(w.detach(), ws[k], rtol=1e-14, atol=1e-15)


def _id(bad: dict) -> str:
    """A test id that is the same in every process (a lambda's repr holds its address)."""
    return ",".join(f"{k}={getattr(v, '__name__', v)}" for k, v in bad.items())


BAD_SGD_INPUTS = [
    (dict(stage_lrs=[]), ValueError, "stage_lrs"),
    (dict(stage_lrs=()), ValueError, "stage_lrs"),
    (dict(stage_lrs=0.1), TypeError, "stage_lrs"),
    (dict(stage_lrs="0.1"), TypeError, "stage_lrs"),
    (dict(stage_lrs=[0.1, 0.0]), ValueError, "stage_lrs[1]"),
    (dict(stage_lrs=[-0.1]), ValueError, "stage_lrs[0]"),
    (dict(stage_lrs=[float("nan")]), ValueError, "stage_lrs[0]"),
    (dict(stage_lrs=[float("inf")]), ValueError, "stage_lrs[0]"),
    (dict(stage_lrs=[None]), TypeError, "stage_lrs[0]"),
    (dict(iters_per_stage=0), ValueError, "iters_per_stage"),
    (dict(iters_per_stage=-2), ValueError, "iters_per_stage"),
    (dict(iters_per_stage=2.5), TypeError, "iters_per_stage"),
    (dict(iters_per_stage=True), TypeError, "iters_per_stage"),
    (dict(iters_per_stage=[2]), ValueError, "iters_per_stage"),
    (dict(iters_per_stage=[2, 0]), ValueError, "iters_per_stage[1]"),
    (dict(grad_fn=None), TypeError, "grad_fn"),
    (dict(grad_fn=lambda w, s: w.sum()), ValueError, "grad_fn"),  # a scalar, not w's shape
    (dict(grad_fn=lambda w, s: w.tolist()), TypeError, "grad_fn"),  # a list, not a tensor
    (dict(w0=[1.0, 2.0]), TypeError, "w0"),
    (dict(w0=torch.tensor([1, 2])), TypeError, "w0"),
]


@pytest.mark.parametrize("bad, exc, name", BAD_SGD_INPUTS, ids=[_id(b) for b, _, _ in BAD_SGD_INPUTS])
def test_stagewise_sgd_bad_input_names_parameter(bad, exc, name):
    args = dict(w0=torch.ones(2), grad_fn=lambda w, s: w, stage_lrs=[0.1, 0.01], iters_per_stage=2)
    args.update(bad)
    with pytest.raises(exc) as info:
        stagewise_sgd(**args)
    assert str(info.value).startswith(name), str(info.value)


@pytest.mark.parametrize("bad, exc, name", [
    (dict(lr=0.0), ValueError, "lr"), (dict(lr=float("nan")), ValueError, "lr"),
    (dict(lr=[0.1]), TypeError, "lr"),
    (dict(iters=0), ValueError, "iters"), (dict(iters=1.0), TypeError, "iters"),
    (dict(grad_fn="w"), TypeError, "grad_fn"), (dict(grad_fn=lambda w, t: w[:1]), ValueError, "grad_fn"),
    (dict(w0=torch.tensor([1, 2])), TypeError, "w0"),
])
def test_sgd_bad_input_names_parameter(bad, exc, name):
    args = dict(w0=torch.ones(2), grad_fn=lambda w, t: w, lr=0.1, iters=3)
    args.update(bad)
    with pytest.raises(exc, match=rf"^{name}:"):
        sgd(**args)


# ----------------------------------------------------------------------------------------------------
# schedulers against formulas and torch

def test_stagewise_lr_matches_multisteplr():
    ours = run_lrs(StagewiseLR(make_optimizer((0.1, 0.03)), milestones=[5, 12, 40], gamma=0.3), 60)
    theirs = run_lrs(torch_sched.MultiStepLR(make_optimizer((0.1, 0.03)), [5, 12, 40], gamma=0.3), 60)
    assert_lrs_close(ours, theirs, rtol=1e-14)
    assert ours[4][0] == 0.1 and ours[5][0] == pytest.approx(0.03)


def test_stagewise_lr_stage_lrs_first_and_last_step(device):
    stage_lrs, Ts = [0.4, 0.1, 0.02], [3, 4, 2]
    lrs = [x[0] for x in run_lrs(StagewiseLR(make_optimizer(device=device), stage_lrs=stage_lrs,
                                             iters_per_stage=Ts), 12)]
    start = 0
    for eta, T in zip(stage_lrs, Ts, strict=True):
        assert lrs[start] == eta and lrs[start + T - 1] == eta
        start += T
    assert lrs[9:] == [0.02] * 3  # after the last stage: stays at eta_S


@pytest.mark.parametrize("start_factor, W", [(0.1, 5), (0.25, 1), (1 / 3, 17), (1.0, 4)])
def test_linear_warmup_matches_linearlr(start_factor, W):
    ours = run_lrs(LinearWarmupLR(make_optimizer((0.2, 0.05)), W, start_factor), 3 * W + 5)
    theirs = run_lrs(torch_sched.LinearLR(make_optimizer((0.2, 0.05)), start_factor, 1.0, total_iters=W),
                     3 * W + 5)
    assert_lrs_close(ours, theirs)


def test_linear_warmup_formula_goyal():
    # Goyal et al.: k = 32 (8192 images), lr from 0.1 to 3.2 over the warmup, one step per iteration
    eta = scaled_lr(0.1, 8192)
    W = 100
    lrs = [x[0] for x in run_lrs(LinearWarmupLR(make_optimizer((eta,)), W, start_factor=1 / 32), 150)]
    for t in range(W):
        assert lrs[t] == pytest.approx(eta * (1 / 32 + (1 - 1 / 32) * t / W), rel=1e-15)
    assert lrs[0] == pytest.approx(0.1, rel=1e-15)
    assert all(x == eta for x in lrs[W:])
    assert all(b > a for a, b in zip(lrs[:W], lrs[1:W + 1], strict=True))


@pytest.mark.filterwarnings("ignore:The epoch parameter")
def test_linear_warmup_then_cosine_matches_sequentiallr():
    W, T_max = 6, 30
    opt = make_optimizer((0.1, 0.02))
    ours = run_lrs(LinearWarmupLR(opt, W, 0.2, after=CosineLR(opt, T_max, eta_min=1e-3)), W + T_max + 1)
    opt2 = make_optimizer((0.1, 0.02))
    seq = torch_sched.SequentialLR(opt2, [torch_sched.LinearLR(opt2, 0.2, 1.0, total_iters=W),
                                          torch_sched.CosineAnnealingLR(opt2, T_max, eta_min=1e-3)],
                                   milestones=[W])
    assert_lrs_close(ours, run_lrs(seq, W + T_max + 1), rtol=1e-10)
    assert ours[W][0] == 0.1 and ours[-1][0] == pytest.approx(1e-3, rel=1e-12)


def test_linear_warmup_unshifted_keeps_one_clock():
    # Goyal et al. count epochs from the start: warmup 5, then divide by 10 at epochs 30 and 60
    opt = make_optimizer((0.4,))
    after = StagewiseLR(opt, milestones=[30, 60], gamma=0.1)
    lrs = [x[0] for x in run_lrs(LinearWarmupLR(opt, 5, 0.25, after=after, shift=False), 70)]
    assert lrs[0] == 0.1 and lrs[5] == 0.4 and lrs[29] == 0.4
    assert lrs[30] == pytest.approx(0.04) and lrs[60] == pytest.approx(0.004)
    opt = make_optimizer((0.4,))
    warm = LinearWarmupLR(opt, 5, 0.25, after=StagewiseLR(opt, milestones=[30, 60]))
    shifted = [x[0] for x in run_lrs(warm, 70)]
    assert shifted[34] == 0.4 and shifted[35] == pytest.approx(0.04)


def test_linear_warmup_ramps_to_stagewise_first_stage():
    opt = make_optimizer((1.0,))
    after = StagewiseLR(opt, stage_lrs=[0.5, 0.05], iters_per_stage=10)
    lrs = [x[0] for x in run_lrs(LinearWarmupLR(opt, 4, 0.5, after=after), 30)]
    assert lrs[:4] == [0.25, 0.3125, 0.375, 0.4375]
    assert lrs[4:14] == [0.5] * 10 and lrs[14:] == [0.05] * 16


@pytest.mark.parametrize("eta_min", [0.0, 1e-3])
def test_cosine_matches_torch_and_formula(eta_min):
    T_max = 50
    ours = run_lrs(CosineLR(make_optimizer((0.1, 0.5)), T_max, eta_min), 80)
    theirs = run_lrs(torch_sched.CosineAnnealingLR(make_optimizer((0.1, 0.5)), T_max, eta_min), T_max + 1)
    assert_lrs_close(ours[:T_max + 1], theirs, rtol=1e-10)
    for t, (lr, _) in enumerate(ours[:T_max + 1]):
        expected = eta_min + (0.1 - eta_min) * (1 + math.cos(math.pi * t / T_max)) / 2
        assert lr == pytest.approx(expected, rel=1e-15)
    assert ours[0][0] == 0.1
    assert all(x[0] == eta_min for x in ours[T_max:])  # held, where torch would climb back up


@pytest.mark.parametrize("T_0, T_mult, eta_min", [(10, 1, 0.0), (3, 2, 1e-3), (2, 3, 0.0), (5, 2, 0.01)])
def test_sgdr_matches_torch_warm_restarts(T_0, T_mult, eta_min):
    n = 400
    ours = run_lrs(SGDR(make_optimizer((0.1, 0.3)), T_0, T_mult, eta_min), n)
    torch_sgdr = torch_sched.CosineAnnealingWarmRestarts(make_optimizer((0.1, 0.3)), T_0, T_mult, eta_min)
    theirs = run_lrs(torch_sgdr, n)
    assert_lrs_close(ours, theirs, rtol=1e-13)


def test_sgdr_restarts_at_the_right_steps():
    T_0, T_mult, eta = 3, 2, 0.1
    sched = SGDR(make_optimizer((eta,)), T_0, T_mult)
    lrs = [x[0] for x in run_lrs(sched, 100)]
    restarts = [3, 9, 21, 45, 93]  # T_0 + T_0*2 + T_0*4 + ...
    assert sched.restarts(5) == restarts
    at_base = [t for t, lr in enumerate(lrs) if lr == eta]
    assert at_base == [0] + restarts
    for r in restarts:
        assert lrs[r - 1] < lrs[r - 2] < eta  # annealing down right up to the restart
    # within run i (length T_0 * 2^i), the formula with T_cur counted from the restart
    starts = [0] + restarts
    for i, (s, e) in enumerate(zip(starts, starts[1:], strict=False)):
        T_i = T_0 * T_mult**i
        assert e - s == T_i
        for t in range(s, e):
            expected = eta * (1 + math.cos(math.pi * (t - s) / T_i)) / 2
            assert lrs[t] == pytest.approx(expected, rel=1e-15, abs=0)


@settings(max_examples=60, deadline=None)
@given(T_0=st.integers(1, 7), T_mult=st.integers(1, 4), t=st.integers(0, 3000))
def test_sgdr_run_and_offset_matches_loop(T_0, T_mult, t):
    sched = SGDR(make_optimizer(), T_0, T_mult)
    i, T_cur, T_i = 0, 0, T_0
    for _ in range(t):  # torch's stepping rule, one update at a time
        T_cur += 1
        if T_cur >= T_i:
            i, T_cur, T_i = i + 1, T_cur - T_i, T_i * T_mult
    assert sched.run_and_offset(t) == (i, T_cur, T_i)


def _factories():
    def warm_cos(opt):
        return LinearWarmupLR(opt, 4, 0.1, after=CosineLR(opt, 20, 1e-4))

    return {
        "stagewise-milestones": lambda opt: StagewiseLR(opt, milestones=[3, 8], gamma=0.5),
        "stagewise-stage-lrs": lambda opt: StagewiseLR(opt, stage_lrs=[0.3, 0.1, 0.01],
                                                       iters_per_stage=[3, 5, 4]),
        "warmup": lambda opt: LinearWarmupLR(opt, 6, 0.2),
        "warmup-cosine": warm_cos,
        "warmup-sgdr-unshifted": lambda opt: LinearWarmupLR(opt, 3, 0.0, after=SGDR(opt, 4, 2), shift=False),
        "cosine": lambda opt: CosineLR(opt, 15, 1e-3),
        "sgdr": lambda opt: SGDR(opt, 3, 2, 1e-3),
    }


@pytest.mark.parametrize("name", list(_factories()))
def test_schedules_state_dict_round_trip(name, device):
    factory = _factories()[name]
    reference = factory(make_optimizer((0.1, 0.05), device))
    expected = run_lrs(reference, 30)

    first = factory(make_optimizer((0.1, 0.05), device))
    run_lrs(first, 11)
    buffer = io.BytesIO()
    torch.save({"optimizer": first.optimizer.state_dict(), "scheduler": first.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=False)
    assert "optimizer" not in saved["scheduler"]

    opt = make_optimizer((0.1, 0.05), device)
    resumed = factory(opt)  # built first, then loaded, as torch's docs say
    opt.load_state_dict(saved["optimizer"])
    resumed.load_state_dict(saved["scheduler"])
    assert resumed.last_epoch == 11
    assert_lrs_close(expected[11:], run_lrs(resumed, 19), rtol=0)


@pytest.mark.filterwarnings("ignore:The epoch parameter")
@pytest.mark.parametrize("name", list(_factories()))
def test_schedules_step_to_epoch_uses_closed_form(name):
    sched = _factories()[name](make_optimizer((0.1, 0.05)))
    expected = run_lrs(_factories()[name](make_optimizer((0.1, 0.05))), 25)
    for t in (17, 3, 24):
        sched.optimizer.step()
        sched.step(t)
        assert sched.get_last_lr() == expected[t] == sched.lr_at(t)


def test_scaled_lr_linear_rule():
    assert scaled_lr(0.1, 256) == 0.1
    assert scaled_lr(0.1, 8192) == pytest.approx(3.2, rel=1e-15)  # Goyal et al.'s 8k mini-batch
    assert scaled_lr(0.05, 64, base_batch_size=32) == pytest.approx(0.1, rel=1e-15)
    assert scaled_lr(0.1, 2048) == pytest.approx(2 * scaled_lr(0.1, 1024), rel=1e-15)


def _other_opt():
    return make_optimizer()


BAD_SCHEDULES = [
    ("neither", lambda o: StagewiseLR(o), ValueError, "milestones, stage_lrs"),
    ("both", lambda o: StagewiseLR(o, [2], stage_lrs=[0.1], iters_per_stage=1), ValueError, "milestones"),
    ("empty stage_lrs", lambda o: StagewiseLR(o, stage_lrs=[], iters_per_stage=2), ValueError, "stage_lrs"),
    ("no iters", lambda o: StagewiseLR(o, stage_lrs=[0.1]), ValueError, "iters_per_stage"),
    ("zero iters", lambda o: StagewiseLR(o, stage_lrs=[0.1], iters_per_stage=0), ValueError,
     "iters_per_stage"),
    ("iters with milestones", lambda o: StagewiseLR(o, [3], iters_per_stage=2), ValueError,
     "iters_per_stage"),
    ("empty milestones", lambda o: StagewiseLR(o, []), ValueError, "milestones"),
    ("milestones down", lambda o: StagewiseLR(o, [5, 3]), ValueError, "milestones"),
    ("milestone 0", lambda o: StagewiseLR(o, [0, 3]), ValueError, "milestones[0]"),
    ("gamma 0", lambda o: StagewiseLR(o, [3], gamma=0.0), ValueError, "gamma"),
    ("warmup 0", lambda o: LinearWarmupLR(o, 0), ValueError, "warmup_steps"),
    ("warmup -3", lambda o: LinearWarmupLR(o, -3), ValueError, "warmup_steps"),
    ("warmup float", lambda o: LinearWarmupLR(o, 2.0), TypeError, "warmup_steps"),
    ("warmup >= total", lambda o: LinearWarmupLR(o, 10, total_steps=10), ValueError, "warmup_steps"),
    ("total 0", lambda o: LinearWarmupLR(o, 10, total_steps=0), ValueError, "total_steps"),
    ("start_factor", lambda o: LinearWarmupLR(o, 5, start_factor=1.5), ValueError, "start_factor"),
    ("after torch", lambda o: LinearWarmupLR(o, 5, after=torch_sched.StepLR(o, 3)), TypeError, "after"),
    ("after other opt", lambda o: LinearWarmupLR(o, 5, after=CosineLR(_other_opt(), 10)), ValueError,
     "after"),
    ("warmup hides cosine", lambda o: LinearWarmupLR(o, 10, after=CosineLR(o, 10), shift=False), ValueError,
     "warmup_steps"),
    ("warmup hides stages", lambda o: LinearWarmupLR(o, 6, after=StagewiseLR(o, stage_lrs=[0.1, 0.01],
                                                                           iters_per_stage=3), shift=False),
     ValueError, "warmup_steps"),
    ("T_max 0", lambda o: CosineLR(o, 0), ValueError, "T_max"),
    ("eta_min < 0", lambda o: CosineLR(o, 5, eta_min=-1e-3), ValueError, "eta_min"),
    ("T_0 0", lambda o: SGDR(o, 0), ValueError, "T_0"),
    ("T_mult 0", lambda o: SGDR(o, 3, 0), ValueError, "T_mult"),
    ("T_mult 1.5", lambda o: SGDR(o, 3, 1.5), TypeError, "T_mult"),
    ("not an optimizer", lambda o: CosineLR([torch.zeros(1)], 5), TypeError, "optimizer"),
]


@pytest.mark.parametrize("case, build, exc, name", BAD_SCHEDULES, ids=[c[0] for c in BAD_SCHEDULES])
def test_schedules_bad_input_names_parameter(case, build, exc, name):
    with pytest.raises(exc) as info:
        build(make_optimizer())
    assert str(info.value).startswith(name), str(info.value)


@pytest.mark.parametrize("args, exc, name", [
    ((0.0, 256), ValueError, "base_lr"), ((0.1, 0), ValueError, "batch_size"),
    ((0.1, 256.0), TypeError, "batch_size"), ((0.1, 256, 0), ValueError, "base_batch_size"),
])
def test_scaled_lr_bad_input_names_parameter(args, exc, name):
    with pytest.raises(exc, match=rf"^{name}:"):
        scaled_lr(*args)
