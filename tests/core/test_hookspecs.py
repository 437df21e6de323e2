"""Meta-test (after datasette): every hook is documented where it is
specified, and every hook is exercised by a test named ``test_hook_<name>``."""
from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from relforge import hookspecs
from relforge.registry import _spec_names

TESTS = Path(__file__).resolve().parents[1]
HOOKS = sorted(_spec_names())


def test_there_are_hooks():
    assert {"register_templates", "register_decoders", "register_retrievers", "register_losses",
            "register_pretraining_stages", "register_datasets", "register_methods", "on_run_start",
            "on_metrics", "on_artifact", "on_run_end"} <= set(HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented(hook):
    fn = getattr(hookspecs, hook)
    doc = inspect.getdoc(fn) or ""
    for section in ("Arguments:", "Returns:", "Called:"):
        assert section in doc, f"hook {hook} has no '{section}' section in its docstring"
    for arg in inspect.signature(fn).parameters:
        assert f"{arg}:" in doc.split("Arguments:")[1].split("Returns:")[0], \
            f"hook {hook}: argument {arg!r} is not documented"


def _test_function_names() -> set[str]:
    names = set()
    for path in TESTS.rglob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_"):
                names.add(node.name)
    return names


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_exercised(hook):
    assert f"test_hook_{hook}" in _test_function_names(), f"no test named test_hook_{hook}"
