"""``relforge new-plugin``: the scaffold installs, is listed, and passes its own test.

The scaffold is pip-installed (editable, no dependencies) into a temporary
virtual environment that sees this environment's packages through a .pth
file, so nothing is downloaded and this environment is left untouched.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import site
import subprocess
import sys
import textwrap
from pathlib import Path

from relforge.scaffold import scaffold_plugin

ROOT = Path(__file__).resolve().parents[2]


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
    assert "4 passed" in res.stdout
    # this environment does not see the plugin
    assert "demo_rel" not in subprocess.run([sys.executable, "-m", "relforge", "plugins", "--json"],
                                            capture_output=True, text=True).stdout


def tutorial_blocks() -> tuple[list[str], str]:
    """The tutorial's shell commands (in order) and its step-3 Python block."""
    text = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    tutorial = text.split("## Tutorial: your first plugin")[1].split("\n## ")[0]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", tutorial, flags=re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line:
                commands.append(line)
    python = re.findall(r"```python\n(.*?)```", tutorial, flags=re.S)
    assert len(python) == 1
    return commands, textwrap.dedent(python[0])


def test_the_contributing_tutorial_runs_verbatim(tmp_path):
    """Every command of CONTRIBUTING's tutorial, in a fresh environment, as a
    reader types them (``relforge``/``pytest``/``pip`` run through that
    environment's interpreter; pip is kept offline), with the step-3 edit
    applied to the scaffolded loss."""
    commands, step3 = tutorial_blocks()
    assert commands[0].startswith("relforge new-plugin my_method")
    py = make_venv(tmp_path / "venv")
    work = tmp_path / "work"
    work.mkdir()
    outputs = []
    for n, command in enumerate(commands):
        if command.startswith("relforge config show method=my_method"):  # step 3 comes before step 4
            plugin = work / "relforge-my-method" / "relforge_my_method" / "__init__.py"
            source = plugin.read_text()
            start = source.index("class SmoothedCrossEntropy(Loss):")
            end = source.index("\nclass ", start + 1)
            plugin.write_text(source[:start] + step3 + "\n" + source[end:])
        args = shlex.split(command)
        if args[0] == "pip":
            args = ["-m", "pip", args[1], "--no-deps", "--no-build-isolation", "--no-index", *args[2:]]
        else:
            args = ["-m", *args]
        res = run(py, *args, cwd=work)
        assert res.returncode == 0, f"step {n}: {command}\n{res.stdout}\n{res.stderr}"
        outputs.append(res.stdout)
    by_command = dict(zip(commands, outputs))
    listed = next(out for cmd, out in by_command.items() if cmd.startswith("relforge plugins"))
    assert "my_method" in listed and "smoothed_ce" in listed
    tests = next(out for cmd, out in by_command.items() if cmd.startswith("pytest"))
    assert "4 passed" in tests
    shown = next(out for cmd, out in by_command.items() if "loss.weight=0.5" in cmd)
    assert "weight: 0.5" in shown
    borrowed = next(out for cmd, out in by_command.items() if "loss=my_method.smoothed_ce" in cmd)
    assert "my_method.smoothed_ce" in borrowed and "threshold: 0.5" in borrowed
    assert (work / "runs" / "my-first" / "best" / "relforge.json").exists()
    # the typo the tutorial mentions is refused, naming the key and the component
    res = run(py, "-m", "relforge", "config", "show", "method=my_method", "loss.wieght=0.5", cwd=work)
    assert res.returncode != 0 and "loss.wieght" in res.stderr + res.stdout
    assert "my_method.smoothed_ce" in res.stderr + res.stdout
