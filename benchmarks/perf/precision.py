"""bf16 autocast on a CPU (``train.mixed_precision: bf16``/``auto``) against full precision.

Part 1: matrix products of a MiniLM layer's shapes, float32 against bfloat16 (what oneDNN does with
the CPU's bf16 instructions, or emulates without them). Part 2: full optimizer steps (forward,
backward, AdamW) of every quickstart method, built as the quickstart suite builds them, in float32 and
under bf16 autocast (as the trainer runs them), on the same batches, interleaved round by round so
the ratios are side by side on a noisy machine; the median step is reported. Accuracy is not measured
here: that is the three-seed suite ``precision-quickstart``.

    python benchmarks/perf/precision.py [--rounds 3] [--steps 3] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
from common import build_for_training, commit, machine, print_table, time_steps

QUICKSTART = ["data.dataset=quickstart", "data.dataset.train_size=240", "data.dataset.dev_size=60",
              "data.dataset.test_size=100", "model.max_source_length=64", "model.max_target_length=16",
              "model.freeze_embeddings=true", "tracking.trackers=[]"]
METHODS = {"cptuning": ["method=cptuning"], "etrag": ["method=etrag"], "generative_ce": ["method=generative_ce"],
           "marker_classifier": ["method=marker_classifier"], "tkre": ["method=tkre", "pretraining=[]"]}


def matmul_rates(repeats: int = 30) -> list[dict]:
    rows = []
    for m, k, n in [(2048, 384, 1536), (2048, 1536, 384), (1024, 384, 384)]:
        rate = {}
        for dtype in (torch.float32, torch.bfloat16):
            a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
            for _ in range(3):
                a @ b
            t0 = time.perf_counter()
            for _ in range(repeats):
                a @ b
            rate[dtype] = 2 * m * k * n * repeats / (time.perf_counter() - t0) / 1e9
        rows.append({"shape": f"{m}x{k} @ {k}x{n}", "fp32_gflops": round(rate[torch.float32], 1),
                     "bf16_gflops": round(rate[torch.bfloat16], 1),
                     "ratio": round(rate[torch.bfloat16] / rate[torch.float32], 2)})
    return rows


def main() -> None:
    from relforge.engine.precision import cpu_bf16_native

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3, help="optimizer steps per case per round")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    info = {"machine": machine(a.threads), "bf16_instructions": cpu_bf16_native(),
            "load_1min": round(os.getloadavg()[0], 2), "commit": commit()}
    mm = matmul_rates()
    for r in mm:
        print(json.dumps({"part": "matmul", **r, **info}))
    rows = []
    for method in a.methods:
        model, feats, opt = build_for_training(METHODS[method] + QUICKSTART)
        # one model for both cases: the same weights and batches; the steps keep training it, which
        # does not change a step's cost
        built = {"fp32": (model, feats, opt), "bf16": (model, feats, opt)}
        times = time_steps(built, rounds=a.rounds, steps=a.steps, batch=a.batch, bf16={"bf16"})
        fp32, bf16 = statistics.median(times["fp32"]), statistics.median(times["bf16"])
        rows.append({"part": "step", "method": method, "fp32_step_s": round(fp32, 3), "bf16_step_s": round(bf16, 3),
                     "speedup": round(fp32 / bf16, 2), "steps_timed": len(times["bf16"]), **info})
        print(json.dumps(rows[-1]))
        del model, feats, opt, built
    print(f"\nmachine: {info['machine']}; bf16 instructions: {info['bf16_instructions']}; load average "
          f"{info['load_1min']}; commit {info['commit']}; batch {a.batch}, {a.rounds} rounds x {a.steps} steps "
          f"per case, median step\n")
    print_table(["matrix product", "float32 GFLOP/s", "bf16 GFLOP/s", "bf16 / float32"],
                [[r["shape"], r["fp32_gflops"], r["bf16_gflops"], f"{r['ratio']}x"] for r in mm])
    print()
    print_table(["method (quickstart)", "float32 step s", "bf16 autocast step s", "speed-up"],
                [[r["method"], r["fp32_step_s"], r["bf16_step_s"], f"{r['speedup']}x"] for r in rows])


if __name__ == "__main__":
    main()
