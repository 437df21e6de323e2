"""ETRAG's training step against SuRE's (issue #20, point 2): the same code path with k = 0
(SuRE: the generator alone), ETRAG as the paper and its public code train it (each step's pool of
``pool_size`` memory items encoded with gradients beside the queries), and ETRAG with
``model.pool_gradients: false`` (the pool read from the memory cache, re-encoded every
``refresh_every`` steps: the retriever learns through the queries only -- a departure, for speed).

The quickstart suite's ETRAG configuration (default MiniLM generator and retriever, frozen token
embeddings, sources up to 64 tokens, batch 16, k = 5, pool 32) on its training data. Each case runs
full optimizer steps (forward, backward, AdamW) on the same batches, interleaved round by round, so
the ratios are side by side on a noisy machine; the median step time is reported, with the time of
the memory refresh spread over ``refresh_every`` steps for the cached case.

    python benchmarks/perf/etrag_step.py [--rounds 5] [--steps 3] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from common import build_for_training, commit, machine, print_table, time_steps

import torch


def build(extra: list[str]):
    return build_for_training([
        "method=etrag", "data.dataset=quickstart", "data.dataset.train_size=240", "data.dataset.dev_size=60",
        "data.dataset.test_size=100", "model.max_source_length=64", "model.max_target_length=16",
        "model.freeze_embeddings=true", "tracking.trackers=[]", *extra])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=3, help="optimizer steps per case per round")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cases = {"sure (k=0)": ["model.k=0", "pretraining=[]"],
             "etrag (pool with gradients, the paper's)": ["model.k=5", "model.pool_size=32"],
             "etrag (pool from the cache)": ["model.k=5", "model.pool_size=32", "model.pool_gradients=false"]}
    built = {name: build(extra) for name, extra in cases.items()}
    times = time_steps(built, rounds=a.rounds, steps=a.steps, batch=a.batch)
    refresh: dict[str, float] = {}
    cached_model = built["etrag (pool from the cache)"][0]
    t0 = time.perf_counter()
    cached_model.refresh_memory()  # what the cached case pays every refresh_every steps
    refresh_s = time.perf_counter() - t0
    refresh["etrag (pool from the cache)"] = refresh_s / cached_model.settings.refresh_every
    base = statistics.median(times["sure (k=0)"])
    info = {"machine": machine(a.threads), "load_1min": round(os.getloadavg()[0], 2), "commit": commit()}
    rows = []
    for name in cases:
        step = statistics.median(times[name]) + refresh.get(name, 0.0)
        rows.append({"case": name, "step_s": round(step, 3), "vs_sure": round(step / base, 2),
                     "steps_timed": len(times[name]), "memory_items": len(built[name][0].memory_items)
                     if name != "sure (k=0)" else 0, **info})
        print(json.dumps(rows[-1]))
    print(f"\nmachine: {info['machine']}; load average {info['load_1min']}; commit {info['commit']}; "
          f"batch {a.batch}, {a.rounds} rounds x {a.steps} steps per case, median step; the cached case "
          f"includes one memory refresh ({refresh_s:.2f} s) spread over refresh_every steps\n")
    print_table(["case", "step s", "vs SuRE"], [[r["case"], r["step_s"], f"{r['vs_sure']}x"] for r in rows])


if __name__ == "__main__":
    main()
