"""The quickstart's cells at two commits, side by side: ``relforge bench quickstart`` at commit A
and at commit B, alternated round by round (A B B A A B ...) so that a noisy machine's slow and
quiet phases fall on both arms. Each run has its own git worktree (made here, removed at the end),
its own output folder and SQLite store, and this environment's Python; before each run a float32
1024^3 matrix product is timed as a probe of how busy the machine is.

Prints JSON lines and a Markdown table with the machine, the load and both commits: each cell's
seconds (MLflow's run start to end, as the suite's table shows them), the cells' total, and the
test micro-F1 of every cell (the two commits' scores are compared, not assumed equal).

    RELFORGE_DATA_DIR=../shared/data python benchmarks/perf/quickstart_ab.py OLD NEW [--rounds 2]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import print_table

ROOT = Path(__file__).resolve().parents[2]


def probe_ms(repeats: int = 40) -> float:
    code = ("import time, torch; torch.manual_seed(0); a = torch.randn(1024, 1024); b = torch.randn(1024, 1024)\n"
            "for _ in range(3): a @ b\n"
            f"t = time.perf_counter()\nfor _ in range({repeats}): a @ b\n"
            f"print((time.perf_counter() - t) / {repeats} * 1000)")
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def cells(store: Path) -> dict[str, dict[str, float]]:
    """Per child run of the store: seconds from start to end and test/micro_f1."""
    db = sqlite3.connect(store)
    out = {}
    for run_id, name, start, end in db.execute("select run_uuid, name, start_time, end_time from runs "
                                               "order by start_time"):
        if name.startswith("suite-") or not (start and end):
            continue
        f1 = db.execute("select value from latest_metrics where run_uuid = ? and key = 'test/micro_f1'",
                        (run_id,)).fetchone()
        out[name.split("-quickstart")[0]] = {"seconds": round((end - start) / 1000, 1),
                                              "test_micro_f1": round(f1[0], 4) if f1 else None}
    return out


def run_once(tree: Path, out: Path, data_dir: str) -> dict:
    out.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": f"{tree / 'platform'}{os.pathsep}{tree / 'plugins'}",
           "RELFORGE_DATA_DIR": data_dir, "RELFORGE_QUIET": "1"}
    probe = probe_ms()
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "relforge", "bench", str(tree / "benchmarks/suites/quickstart.yaml"),
                           "--output-dir", "runs"], cwd=out, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit(f"the quickstart at {tree} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    wall = time.perf_counter() - t0
    per = cells(out / "mlflow.db")
    return {"probe_ms": round(probe, 2), "wall_s": round(wall, 1), "cells": per,
            "cells_s": round(sum(c["seconds"] for c in per.values()), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    data_dir = os.environ.get("RELFORGE_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    revs = {arm: subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.strip() for arm, rev in (("old", args.old), ("new", args.new))}
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs; load average at start "
          f"{os.getloadavg()[0]:.2f}; old {revs['old']}, new {revs['new']}")
    results = []
    with tempfile.TemporaryDirectory(prefix="relforge-qs-ab-") as tmp:
        trees = {}
        for arm, rev in revs.items():
            trees[arm] = Path(tmp) / f"tree-{arm}"
            subprocess.run(["git", "worktree", "add", "--detach", str(trees[arm]), rev], cwd=ROOT, check=True,
                           capture_output=True)
        try:
            for r in range(args.rounds):
                for arm in (("old", "new") if r % 2 == 0 else ("new", "old")):
                    res = {"round": r + 1, "arm": arm, "commit": revs[arm],
                           **run_once(trees[arm], Path(tmp) / f"run-{r}-{arm}", data_dir)}
                    print(json.dumps(res), flush=True)
                    results.append(res)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)
    names = list(results[0]["cells"])
    print_table(["round", "arm", "commit", "probe (ms)", *names, "cells (s)", "test micro-F1"],
                [[r["round"], r["arm"], r["commit"], r["probe_ms"], *[r["cells"].get(n, {}).get("seconds") for n in names],
                  f"**{r['cells_s']}**", " / ".join(str(r["cells"].get(n, {}).get("test_micro_f1")) for n in names)]
                 for r in results])
    for r in range(args.rounds):
        pair = {x["arm"]: x["cells_s"] for x in results if x["round"] == r + 1}
        print(f"round {r + 1}: new - old = {pair['new'] - pair['old']:+.1f} s "
              f"({(pair['new'] / pair['old'] - 1) * 100:+.0f}%)")


if __name__ == "__main__":
    main()
