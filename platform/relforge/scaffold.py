"""``relforge new-plugin NAME``: scaffold a third-party plugin package.

The files are copied from ``scaffold_files/`` with ``__NAME__`` replaced by
the plugin's name (``__DIST__`` by its distribution name); ``.tmpl`` suffixes are dropped (they keep the templates out
of pytest's and setuptools' way inside this package).
"""
from __future__ import annotations

import keyword
import re
from importlib import resources
from pathlib import Path


class ScaffoldError(ValueError):
    pass


FILES = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "plugin.py.tmpl": "relforge___NAME__/__init__.py",
    "sample.jsonl.tmpl": "relforge___NAME__/sample.jsonl",
    "test_plugin.py.tmpl": "tests/test___NAME__.py",
}


def scaffold_plugin(name: str, directory: str | Path | None = None) -> Path:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or keyword.iskeyword(name):
        raise ScaffoldError(f"plugin name {name!r} must be a lower-case Python identifier (e.g. my_method)")
    installed = _installed_plugin_names()
    if name in installed:
        raise ScaffoldError(f"plugin name {name!r} is taken by an installed plugin ({installed[name]}); component "
                            f"names would clash: choose another name")
    target = Path(directory) if directory is not None else Path(f"relforge-{name.replace('_', '-')}")
    clashes = [str(target / dest.replace("__NAME__", name)) for dest in FILES.values()
               if (target / dest.replace("__NAME__", name)).exists()]
    if clashes:
        raise ScaffoldError(f"{target} already has {', '.join(clashes)}; nothing was written: choose another "
                            f"--dir or move those files")
    src = resources.files("relforge") / "scaffold_files"
    for tmpl, dest in FILES.items():
        text = (src / tmpl).read_text(encoding="utf-8").replace("__NAME__", name)
        text = text.replace("__DIST__", name.replace("_", "-"))
        out = target / dest.replace("__NAME__", name)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    return target


def _installed_plugin_names() -> dict[str, str]:
    """Plugin name -> where it comes from, for every plugin RelForge loads here."""
    from relforge.registry import get_registry

    return {name: info.source for name, info in get_registry().plugins.items()}
