"""Data-parallel fit on torch.distributed: W processes take the steps one process takes on the global batch.

The processes are real: forked with torch.multiprocessing (so that they skip re-importing torch) and
joined in a gloo group over TCP on a free port. The model has no batch normalization and no dropout: BN
normalizes each process's shard with that shard's statistics and dropout draws per process, and either
makes the W gradients differ from the full-batch gradient by design (see tricksref.train). LRN,
convolutions, pooling and linear layers act per example, so for them the averaged shard gradients equal the
full-batch gradient exactly, up to the order of floating-point sums; float64 keeps that effect near 1e-15.
"""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tricksref.models import AlexNetSmall
from tricksref.schedules import CosineLR
from tricksref.train import _shard, fit

WORLD = 2
N, BATCH = 50, 15  # batches of 15, 15, 15, 5: odd sizes, so the shards differ by one and the loss is rescaled


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_data():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(N, 1, 16, 16, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (N,), generator=g)
    return x, y


def make_model():
    torch.manual_seed(0)
    return AlexNetSmall(num_classes=10, width=4, dropout=0.0, lrn=True).double()


def train(model, x, y):
    """Momentum SGD with weight decay, a per-iteration cosine schedule and gradient clipping: all of it
    happens after the gradients are averaged, so all of it must agree between one and two processes."""
    return fit(model, (x, y), epochs=2, batch_size=BATCH, seed=3, progress=False, grad_clip=1.0,
               optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3),
               scheduler=lambda opt, n: CosineLR(opt, T_max=n), eval_data=(x[:20], y[:20]))


def _worker(rank, port, out):
    torch.set_num_threads(1)  # one core each; also keeps the forked child out of the parent's OpenMP pool
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        x, y = make_data()
        model = make_model()
        hist = train(model, x, y)
        torch.save({"state": model.state_dict(), "history": hist.to_dict()}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def one_process_run():
    """The reference: one process on the whole global batch (one thread, as each worker has)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x, y = make_data()
        model = make_model()
        hist = train(model, x, y)
    finally:
        torch.set_num_threads(threads)
    return {"state": model.state_dict(), "history": hist.to_dict()}


@pytest.fixture(scope="module")
def two_process_run(one_process_run, tmp_path_factory):
    # forked after the reference ran, the workers find torch and torch.optim's lazy imports already loaded
    out = tmp_path_factory.mktemp("ddp")
    mp.start_processes(_worker, args=(free_port(), str(out)), nprocs=WORLD, start_method="fork", join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def test_distributed_two_gloo_processes_match_one_process(one_process_run, two_process_run):
    ref = one_process_run["state"]
    for r, run in enumerate(two_process_run):
        for k, v in ref.items():
            torch.testing.assert_close(run["state"][k], v, rtol=0, atol=1e-6,
                                       msg=lambda m, k=k, r=r: f"rank {r}, {k}: {m}")
    # the weights moved: the equality is not that of two untrained models
    start = make_model().state_dict()
    assert max((ref[k] - start[k]).abs().max().item() for k in ref) > 1e-2
    # metrics are all-reduced: every process reports the whole data set's loss and accuracy
    for key in ("train_loss", "train_acc", "eval_loss", "eval_acc", "lr"):
        for run in two_process_run:
            assert run["history"][key] == pytest.approx(one_process_run["history"][key], abs=1e-9), key


def test_distributed_ranks_hold_identical_weights(two_process_run):
    a, b = (run["state"] for run in two_process_run)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("n", [1, 2, 5, 15, 16])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_distributed_shards_cover_the_batch_once(n, world):
    spans = [_shard(n, r, world) for r in range(world)]
    assert spans[0][0] == 0 and spans[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))  # contiguous, disjoint
    sizes = [hi - lo for lo, hi in spans]
    assert max(sizes) - min(sizes) <= 1


def test_distributed_true_without_a_process_group_is_an_error():
    x, y = make_data()
    with pytest.raises(ValueError, match="distributed"):
        fit(make_model(), (x, y), epochs=1, distributed=True, progress=False)


def _torchrun_matches_one_process(tmp_path, extra=(), atol=1e-6):
    """``torchrun --standalone --nproc_per_node=2 -m tricksref.train ARGS`` against one process with ARGS."""
    from tricksref.train import main

    args = ["--model", "alexnet", "--no-batchnorm", "--dropout", "0", "--dtype", "float64", "--limit", "45",
            "--batch-size", "15", "--epochs", "1", "--size", "16", "--threads", "1", "--no-progress", *extra]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}",
           "-m", "tricksref.train", *args, "--save", str(tmp_path / "two.pt")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{WORLD} processes" in proc.stdout
    main([*args, "--save", str(tmp_path / "one.pt")])
    two = torch.load(tmp_path / "two.pt", weights_only=True, map_location="cpu")
    one = torch.load(tmp_path / "one.pt", weights_only=True, map_location="cpu")
    for k, v in one.items():
        torch.testing.assert_close(two[k], v, rtol=0, atol=atol)


@pytest.mark.slow
def test_distributed_torchrun_entry_point_matches_one_process(tmp_path):
    """The documented launch, ``torchrun --standalone --nproc_per_node=2 -m tricksref.train``, end to end."""
    _torchrun_matches_one_process(tmp_path)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_distributed_torchrun_two_processes_share_one_gpu(tmp_path):
    """Both processes on cuda:0 with gloo, which reduces CUDA tensors too (nccl refuses two ranks on one GPU):
    DDP on CUDA gives the one-process weights."""
    _torchrun_matches_one_process(tmp_path, ["--device", "cuda:0", "--backend", "gloo"])


@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < WORLD, reason=f"fewer than {WORLD} CUDA devices")
def test_distributed_torchrun_nccl_one_gpu_per_process(tmp_path):
    """The default launch on a machine with a GPU per process: nccl, each process on cuda:LOCAL_RANK."""
    _torchrun_matches_one_process(tmp_path)
