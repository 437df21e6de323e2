"""Peak memory of streaming ``relforge predict`` against the input size.

Trains (or takes with --model) a marker-classifier model on the embedded
quickstart data, writes generated inputs of N and 10 x N lines in the generic
format, runs ``relforge predict`` on each in its own process and prints each
process's peak resident memory (``ru_maxrss``) and wall time, side by side.
Streaming keeps the peak flat: the 10 x N run should be within 10% of the N
run (issue 19's target).

    python benchmarks/perf/predict_memory.py                 # N = 2000
    python benchmarks/perf/predict_memory.py --lines 2000 --model runs/<run>/best
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import resource, sys, time
from relforge.cli import main
t0 = time.perf_counter()
try:
    main(sys.argv[1:])
except SystemExit as e:
    if e.code not in (None, 0):
        raise
print("PEAK_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "SECONDS", time.perf_counter() - t0,
      file=sys.stderr)
"""


def make_input(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    names = ["Ada Quill", "Bram Tolle", "Cora Venn", "Dov Arle", "Vexa Labs", "Norport", "Lisk", "Tormont"]
    verbs = ["was born in", "works for", "visited", "founded", "lives near"]
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            h, t = rng.sample(names, 2)
            filler = " ".join(rng.choice(["quietly", "again", "last year", "with friends"]) for _ in range(3))
            text = f"{h} {rng.choice(verbs)} {t} {filler} ."
            fh.write(json.dumps({"id": f"x{i}", "text": text,
                                 "head": {"start": 0, "end": len(h), "type": "PER"},
                                 "tail": {"start": text.index(t, len(h)), "end": text.index(t, len(h)) + len(t),
                                          "type": "LOC"}}) + "\n")


def run_predict(model: str, src: Path, dst: Path, batch_size: int) -> tuple[float, float]:
    res = subprocess.run([sys.executable, "-c", CHILD, "predict", model, "-i", str(src), "-o", str(dst),
                          "--batch-size", str(batch_size)], capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(res.stderr[-3000:])
    line = next(ln for ln in res.stderr.splitlines() if ln.startswith("PEAK_KB"))
    parts = line.split()
    return float(parts[1]) / 1024, float(parts[3])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lines", type=int, default=2000)
    p.add_argument("--factor", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--model", default=None, help="a model folder (default: train a small one first)")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = a.model
        if model is None:
            subprocess.run([sys.executable, "-m", "relforge", "train", "method=marker_classifier",
                            "data.dataset=quickstart", "data.dataset.train_size=32", "train.max_steps=2",
                            "model.max_source_length=64", "tracking.trackers=[]", "--output-dir",
                            str(tmp / "run")], check=True, capture_output=True)
            model = str(tmp / "run" / "best")
        rows = []
        for n in (a.lines, a.lines * a.factor):
            src = tmp / f"in-{n}.jsonl"
            make_input(src, n)
            peak, seconds = run_predict(model, src, tmp / f"out-{n}.jsonl", a.batch_size)
            written = sum(1 for _ in (tmp / f"out-{n}.jsonl").open())
            assert written == n, (written, n)
            rows.append((n, peak, seconds))
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f} at the end")
    print("| lines | peak RSS (MiB) | wall (s) | lines/s |")
    print("|---|---|---|---|")
    for n, peak, seconds in rows:
        print(f"| {n} | {peak:.0f} | {seconds:.1f} | {n / seconds:.0f} |")
    ratio = rows[1][1] / rows[0][1]
    print(f"peak ratio {rows[1][0]} / {rows[0][0]} lines: {ratio:.3f} ({'within' if ratio <= 1.10 else 'ABOVE'} "
          f"the 10% target)")


if __name__ == "__main__":
    main()
