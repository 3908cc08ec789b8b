"""The student's JupyterLab, in a real browser: the self-check's hint and full marks, and nbgrader's Validate.

The student bundle is built with the public command (``python -m grader bundle DIR --no-site --force``) and
installed as its README says (``pip install -e .``, offline, into a throwaway venv: ``tests/lab_helpers.py``);
the installed JupyterLab 4 serves it on a loopback port with a token, and headless Chromium (Debian's, through
Selenium, as the site's tests drive it) does what a student does: open ``exercises/lrn/lrn.ipynb``, type a
function into its solution cell, Shift+Enter, read the output, press nbgrader's Validate button. Screenshots
of each state go to ``_build/screenshots/jupyterlab-*.png``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from helpers import processes_with
from lab_helpers import KERNEL_NAME, Lab, build_bundle, jupyter_lab, student_venv
from site_helpers import SCREENSHOT_DIR, chromium

pytestmark = [pytest.mark.jupyterlab, pytest.mark.slow]

NOTEBOOK = "exercises/lrn/lrn.ipynb"

# what a student types: one line each, so that the editor's auto-indentation has nothing to add
WRONG_INTER = "def lrn_inter(a, n, k, alpha, beta): return a / (k + alpha * a * a) ** beta"
RIGHT_INTER = ("def lrn_inter(a, n, k, alpha, beta): return a / (k + alpha * sum(torch.nn.functional.pad("
               "a * a, (0, 0, 0, 0, n // 2, n // 2))[:, j:j + a.shape[1]] for j in range(2 * (n // 2) + 1))) "
               "** beta")
RIGHT_INTRA = ("def lrn_intra(a, n, k, alpha, beta): return a / (k + alpha * sum(torch.nn.functional.pad("
               "a * a, (n // 2,) * 4)[:, :, i:i + a.shape[2], j:j + a.shape[3]] "
               "for i in range(2 * (n // 2) + 1) for j in range(2 * (n // 2) + 1))) ** beta")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The bundle, its venv and a JupyterLab on it; yields (server, the released notebook's bytes, venv)."""
    base = tmp_path_factory.mktemp("jupyterlab")
    bundle = base / "bundle"
    proc = build_bundle(bundle)
    assert proc.returncode == 0, proc.stderr[-3000:]
    python = student_venv(bundle, base / "venv")
    # the kernel's Python finds every module of grader and tricksref in the bundle (a module the bundle lacks
    # must fail here, not be found in the repository)
    modules = ["grader", "grader.check", "grader.policy", "grader.suite", "grader.nbgrader_bridge",
               "tricksref"]
    code = f"import {', '.join(modules)}; print({', '.join(m + '.__file__' for m in modules)})"
    where = subprocess.run([str(python), "-c", code], cwd=base, capture_output=True, text=True, timeout=300)
    assert where.returncode == 0, where.stderr[-3000:]
    assert all(Path(p).resolve().is_relative_to(bundle.resolve()) for p in where.stdout.split()), where.stdout
    released = (bundle / NOTEBOOK).read_bytes()
    with jupyter_lab(bundle, python, base / "home") as server:
        yield server, released, python


@pytest.fixture
def lab(served):
    """A fresh browser on the released notebook, with no kernel left from another test."""
    server, released, python = served
    server.shutdown_kernels()
    (server.root / NOTEBOOK).write_bytes(released)
    with chromium() as driver:
        lab = Lab(driver, server)
        lab.open(NOTEBOOK)
        # the notebook's kernel is the student venv's Python (the kernelspec's argv[0])
        assert processes_with(str(python)), "no kernel process runs the student venv's Python"
        yield lab


def shot(name: str) -> Path:
    return SCREENSHOT_DIR / f"jupyterlab-{name}.png"


def test_jupyterlab_self_check_gives_a_hint_then_full_visible_marks(lab):
    lab.screenshot(shot("1-opened"))
    imports = lab.cell_index("import torch")
    lab.run(imports)
    # the waits below can fail: a text that never comes is an error that names it, not a pass
    with pytest.raises(TimeoutError, match="'no such output' in the output of cell"):
        lab.run(imports, until="no such output", timeout=3)
    inter = lab.cell_index("def lrn_inter")

    assert lab.type_into(inter, WRONG_INTER) == WRONG_INTER  # the editor holds exactly what was typed
    lab.run(inter)
    check_inter = lab.cell_index("check(lrn_inter)")
    out = lab.run(check_inter, until="Total:")
    lab.screenshot(shot("2-self-check-hint"), inter)
    assert "[FAIL] test_lrn_inter_worked_example" in out
    # the hint: what the lecture's example should give, and what this lrn_inter gave
    assert "gives 1/9 = 0.1111 for the middle channel, your lrn_inter gives 1.0000" in out
    assert "Total: 0 / 2 points" in out

    assert lab.type_into(inter, RIGHT_INTER) == RIGHT_INTER
    lab.run(inter)
    out = lab.run(check_inter, until="Total: 2 / 2 points")
    lab.screenshot(shot("3-self-check-full-marks-inter"), inter)
    assert "[PASS] test_lrn_inter_worked_example" in out and "[PASS] test_lrn_inter_small_input" in out
    assert "[FAIL]" not in out and "[PART]" not in out

    intra = lab.cell_index("def lrn_intra")
    assert lab.type_into(intra, RIGHT_INTRA) == RIGHT_INTRA
    lab.run(intra)
    check_intra = lab.cell_index("check(lrn_intra)")
    out = lab.run(check_intra, until="Total: 3 / 3 points")
    lab.screenshot(shot("4-self-check-full-marks-intra"), intra)
    assert "[PASS] test_lrn_intra_worked_example" in out and "[PASS] test_lrn_inputs_unmodified" in out
    assert "[FAIL]" not in out and "[PART]" not in out and "skipped" not in out


def test_jupyterlab_nbgrader_validate_fails_then_passes(lab):
    inter, intra = lab.cell_index("def lrn_inter"), lab.cell_index("def lrn_intra")
    assert lab.type_into(inter, WRONG_INTER) == WRONG_INTER
    assert lab.type_into(intra, RIGHT_INTRA) == RIGHT_INTRA

    failed = lab.validate()
    lab.screenshot(shot("5-validate-failed"))
    assert failed["kind"] == "validation-failed", failed
    assert "grade('lrn', 'test_lrn_inter_worked_example'" in failed["text"]
    assert "grade('lrn', 'test_lrn_inter_small_input'" in failed["text"]
    assert "test_lrn_intra_worked_example" not in failed["text"]  # the right lrn_intra passes
    lab.close_dialog()

    assert lab.type_into(inter, RIGHT_INTER) == RIGHT_INTER
    passed = lab.validate()
    lab.screenshot(shot("6-validate-passed"))
    assert passed["kind"] == "validation-success", passed
    assert "Success! Your notebook passes all the tests." in passed["text"]
    lab.close_dialog()
    # Validate saved the notebook first (as its button does): the file holds what the student typed
    saved = (lab.server.root / NOTEBOOK).read_text()
    assert "torch.nn.functional.pad(a * a, (0, 0, 0, 0, n // 2, n // 2))" in saved
    assert KERNEL_NAME in saved  # and records the kernel it ran with
