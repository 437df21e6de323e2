"""Wall time of a suite run inline against the same suite on the ``local``
executor (issue #18): ``relforge bench SUITE`` (cells one after another in
one process, every core for each) against ``relforge bench SUITE --executor
local --jobs N`` (N cells at once, the cores divided among them, logging
through a tracking server the driver starts). Each arm runs in a fresh output
folder with its own SQLite store; a third arm runs inline with one thread
per cell, the same threads as a local cell, whose report must equal the local
arm's (thread counts change float summation order, so the two-thread inline
arm may differ in the last digits of its training).

Prints JSON lines and a Markdown table with the machine, the load and the
commit: wall seconds, the cells' own seconds, one parent run per store, and
whether each report equals the reference's.

    RELFORGE_DATA_DIR=../shared/data python benchmarks/perf/executors.py [--suite quickstart] [--jobs 2]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import commit


def run_arm(name: str, suite: str, root: Path, extra: list[str], threads: int | None,
            cell_threads: int | None = None) -> dict:
    out = root / name
    out.mkdir(parents=True)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{out / 'mlflow.db'}", "RELFORGE_QUIET": "1"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    cmd = [sys.executable, "-m", "relforge", "bench", suite, "--output-dir", str(out / "runs"), *extra]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=out)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{name}: exit {res.returncode}\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    name_of_suite = Path(suite).stem
    folder = out / "runs" / name_of_suite
    summary = json.loads((folder / "summary-shard1of1.json").read_text())
    with open(folder / "report" / "report.csv", encoding="utf-8") as f:
        report = list(csv.DictReader(f))
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    parents = [r for r in runs if r.data.tags.get("relforge.role") == "suite"]
    cells = [r for r in runs if r.data.tags.get("relforge.role") == "cell"]
    return {"arm": name, "command": " ".join(["relforge", "bench", suite, *extra]),
            "threads_per_cell": cell_threads or threads or "all", "wall_s": round(wall, 1),
            "cell_s": round(sum(c["seconds"] for c in summary), 1), "cells": len(summary),
            "finished": sum(c["status"] == "FINISHED" for c in summary), "parent_runs": len(parents),
            "cell_runs": len(cells), "under_parent": sum(c.data.tags.get("mlflow.parentRunId") ==
                                                         (parents[0].info.run_id if parents else None)
                                                         for c in cells),
            "report": report}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--suite", default="quickstart")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--keep", type=Path, help="keep the arms' folders here (default: a temporary folder)")
    a = p.parse_args()
    info = {"machine": f"{platform.platform()}, {os.cpu_count()} CPUs", "load_1min": round(os.getloadavg()[0], 2),
            "commit": commit()}
    with tempfile.TemporaryDirectory(prefix="relforge-executors-") as tmp:
        root = a.keep or Path(tmp)
        arms = [run_arm("inline", a.suite, root, [], None),
                run_arm(f"local-jobs{a.jobs}", a.suite, root, ["--executor", "local", "--jobs", str(a.jobs)], None,
                        max(1, (os.cpu_count() or 1) // a.jobs)),
                run_arm("inline-1-thread", a.suite, root, [], max(1, (os.cpu_count() or 1) // a.jobs))]
    reference = arms[2]["report"]
    for arm in arms:
        arm["report_equals_inline_1_thread"] = arm.pop("report") == reference
        print(json.dumps({**info, **arm}))
    base = arms[0]["wall_s"]
    print(f"\nmachine: {info['machine']}; load average {info['load_1min']} at the start; commit {info['commit']}\n")
    print("| arm | threads per cell | wall s | vs inline | cells' own s | parent runs | cell runs (under the parent) "
          "| report = inline 1-thread |")
    print("|---|---|---|---|---|---|---|---|")
    for r in arms:
        print(f"| `{r['command']}` | {r['threads_per_cell']} | {r['wall_s']} | {base / r['wall_s']:.2f}x | "
              f"{r['cell_s']} | {r['parent_runs']} | {r['cell_runs']} ({r['under_parent']}) | "
              f"{r['report_equals_inline_1_thread']} |")


if __name__ == "__main__":
    main()
