"""The one-call GPU check (benchmarks/gpu/check.py) in its CPU dry mode, so it cannot rot unnoticed."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu" / "check.py"


def run(*args, timeout=900):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="the dry mode is the CPU check")
def test_dry_run_runs_every_step_and_writes_the_results_folder(tmp_path):
    res = run("--dry-run", "--out", str(tmp_path))
    assert res.returncode == 0, res.stdout + res.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["ok"] and summary["dry_run"]
    status = {r["step"]: r["status"] for r in summary["steps"]}
    assert status == {"env": "passed", "install": "skipped", "tests": "passed", "decoding": "passed",
                      "train": "passed"}
    assert json.loads((tmp_path / "env.json").read_text())["cuda"] is False
    assert "skipped" in (tmp_path / "pytest-gpu.txt").read_text()  # the GPU tests were collected, and skip here
    rows = [json.loads(x) for x in (tmp_path / "decoding-gpu.jsonl").read_text().splitlines()]
    assert {"part": "gpu", "skipped": "no CUDA device"} in rows
    # the training step ran every method of the GPU suite, one step each
    cells = json.loads(next((tmp_path / "train" / "runs" / "gpu-quickstart").glob("summary-*.json")).read_text())
    assert {c["coordinates"]["method"] for c in cells} == {"cptuning", "etrag", "generative_ce",
                                                            "marker_classifier", "tkre"}
    assert all(c["status"] == "FINISHED" for c in cells)
    assert "| train | passed |" in (tmp_path / "summary.md").read_text()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the CPU refusal")
def test_without_a_gpu_only_the_dry_run_is_accepted_and_a_spent_budget_is_reported(tmp_path):
    res = run("--out", str(tmp_path / "x"))
    assert res.returncode == 2 and "--dry-run" in res.stderr
    res = run("--dry-run", "--steps", "env,teleport")
    assert res.returncode == 2 and "teleport" in res.stderr
    res = run("--dry-run", "--budget", "0.001", "--steps", "env,tests", "--out", str(tmp_path / "y"))
    assert res.returncode == 1
    steps = json.loads((tmp_path / "y" / "summary.json").read_text())["steps"]
    assert [s["status"] for s in steps][-1] == "not run"
