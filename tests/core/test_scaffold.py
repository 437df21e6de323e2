"""``relforge new-plugin``: the scaffold installs, is listed, and passes its own test.

The scaffold is pip-installed (editable, no dependencies) into a temporary
virtual environment that sees this environment's packages through a .pth
file, so nothing is downloaded and this environment is left untouched.
"""
from __future__ import annotations

import json
import os
import site
import subprocess
import sys
from pathlib import Path

from relforge.scaffold import scaffold_plugin


def make_venv(root: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    py = root / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    parents = [p for p in site.getsitepackages() if Path(p).is_dir()]
    lines = "".join(f"import site; site.addsitedir({p!r})\n" for p in parents)
    (Path(purelib) / "_relforge_parent_env.pth").write_text(lines)
    return py


def run(py: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["HF_HUB_OFFLINE"] = "1"
    return subprocess.run([str(py), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def test_scaffolded_plugin_installs_is_listed_and_passes_its_test(tmp_path):
    plugin_dir = scaffold_plugin("demo_rel", tmp_path / "relforge-demo-rel")
    assert (plugin_dir / "relforge_demo_rel" / "__init__.py").exists()
    py = make_venv(tmp_path / "venv")
    res = run(py, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
              "-e", str(plugin_dir))
    assert res.returncode == 0, res.stdout + res.stderr
    res = run(py, "-m", "relforge", "plugins", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    listed = {p["name"]: p for p in json.loads(res.stdout)["plugins"]}
    assert listed["demo_rel"]["source"] == "entry point relforge-demo-rel"
    assert set(listed["demo_rel"]["components"]) == {
        "templates", "decoders", "retrievers", "losses", "pretraining_stages", "datasets", "methods"}
    res = run(py, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(plugin_dir / "tests"), cwd=plugin_dir)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "3 passed" in res.stdout
    # this environment does not see the plugin
    assert "demo_rel" not in subprocess.run([sys.executable, "-m", "relforge", "plugins", "--json"],
                                            capture_output=True, text=True).stdout
