"""book/chapter_tools.glue writes what myst_nb.glue writes, so the book's {glue:text} roles read it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from myst_nb import glue as myst_glue
from myst_nb.core.variables import format_plain_text

BOOK = Path(__file__).resolve().parents[1] / "book"


def _chapter_tools():
    spec = importlib.util.spec_from_file_location("chapter_tools_under_test", BOOK / "chapter_tools.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ct = _chapter_tools()


def _outputs(glue, *args, **kwargs):
    """The rich outputs one call displays, as (data, metadata) pairs."""
    InteractiveShell.instance()
    with capture_output() as captured:
        glue(*args, **kwargs)
    return [(out.data, out.metadata) for out in captured.outputs]


@pytest.mark.parametrize("value", [0.8125, 3, "91.1 ± 1.7", "it's", [1, 2]], ids=repr)
@pytest.mark.parametrize("display", [False, True])
def test_glue_matches_myst_nb(value, display):
    ours = _outputs(ct.glue, "name", value, display=display)
    theirs = _outputs(myst_glue, "name", value, display=display)
    assert ours == theirs
    assert len(ours) == 1 and ours[0][1]["scrapbook"]["name"] == "name"


@pytest.mark.parametrize("value", [np.float64(0.8125), np.float32(0.8125), torch.tensor(0.8125)],
                         ids=["np.float64", "np.float32", "torch 0-d"])
def test_glue_stores_scalars_as_numbers(value):
    (data, _), = _outputs(ct.glue, "x", value)
    text = data["application/papermill.record/text/plain"]
    assert format_plain_text(text, ".1f") == "0.8"      # what {glue:text}`x:.1f` shows
    (plain, _), = _outputs(ct.glue, "x", 0.8125)
    assert data == plain


def test_glue_leaves_jsonschema_unimported():
    """The reason for the copy: importing myst_nb.glue costs a chapter about a second."""
    code = (f"import sys; sys.path.insert(0, {str(BOOK)!r}); import chapter_tools as ct; "
            "from IPython.core.interactiveshell import InteractiveShell; InteractiveShell.instance(); "
            "ct.glue('x', 1.0); print(sorted(m for m in ('jsonschema', 'nbformat', 'myst_nb') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_fmt_seeds_shows_each_seed():
    assert ct.fmt_seeds([0.7, -1.25, 1.1]) == "0.7, -1.2, 1.1"
    assert ct.fmt_seeds([0.007, -0.013], sign=True, scale=100) == "+0.7, -1.3"
    assert ct.fmt_seeds([0.5], digits=3) == "0.500"
    assert ct.fmt_seeds([]) == ""
