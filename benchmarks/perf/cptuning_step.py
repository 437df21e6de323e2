"""CPTuning's training step against the generative cross-entropy baseline's (issue #20, point 1).

Full optimizer steps (forward, backward, AdamW) of the methods as the suites build them, on the same
batches, interleaved round by round so the ratios are side by side on a noisy machine; the median
step time is reported. Two settings:

* ``quickstart``: the quickstart suite's base (default MiniLM encoder-decoder, frozen token
  embeddings, sources up to 64 tokens, batch 16) on its embedded data: 6 candidate relations.
* ``nyt``: the cptuning-nyt-full suite's base (sources up to 96 tokens) on NYT's val split (read
  from the data directory): 24 candidate relations, every one scored with gradients.

Cases: ``generative_ce`` (the baseline: one teacher-forced pass over the gold target), CPTuning with
every candidate scored (the paper's loss; ``loss.scoring: padded``, the default), the same with
``loss.gold_from_generation: false`` (the gold candidate decoded again instead of read from the
generation pass), with ``loss.scoring: shared`` (the core's Trie scorer with gradients), and with
hard negatives (``loss.negatives: hard``, 2 per row, found by exact scores of every
candidate without gradients).

    python benchmarks/perf/cptuning_step.py [--setting quickstart nyt] [--rounds 5] [--steps 2]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics

import torch
from common import build_for_training, commit, machine, print_table, time_steps

SETTINGS = {
    "quickstart": ["data.dataset=quickstart", "data.dataset.train_size=240", "data.dataset.dev_size=60",
                   "data.dataset.test_size=100", "model.max_source_length=64", "model.max_target_length=16"],
    "nyt": ["data.dataset=nyt", "data.train_split=val", "data.dev_split=carved", "data.sampling.dev_size=200",
            "model.max_source_length=96", "model.max_target_length=24"],
}
CASES = {
    "generative_ce": ["method=generative_ce"],
    "cptuning (all candidates)": ["method=cptuning"],
    "cptuning (all, gold decoded again)": ["method=cptuning", "loss.gold_from_generation=false"],
    "cptuning (all, shared Trie scorer)": ["method=cptuning", "loss.scoring=shared"],
    "cptuning (2 hard negatives)": ["method=cptuning", "loss.negatives=hard", "loss.num_hard=2"],
}


def build(setting: str, extra: list[str], data_dir: str):
    return build_for_training([*SETTINGS[setting], "model.freeze_embeddings=true", "tracking.trackers=[]",
                               f"data.data_dir={data_dir}", *extra], train_rows=400)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--setting", nargs="+", default=["quickstart", "nyt"], choices=sorted(SETTINGS))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=2, help="optimizer steps per case per round")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", default=os.environ.get("RELFORGE_DATA_DIR", "../shared/data"))
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES), metavar="CASE",
                    help="which cases (generative_ce is always run: the others are measured against it)")
    a = ap.parse_args()
    cases = {name: CASES[name] for name in CASES if name in a.cases or name == "generative_ce"}
    torch.set_num_threads(a.threads)
    info = {"machine": machine(a.threads), "commit": commit()}
    table = []
    for setting in a.setting:
        built = {name: build(setting, extra, a.data_dir) for name, extra in cases.items()}
        times = time_steps(built, rounds=a.rounds, steps=a.steps, batch=a.batch)
        base = statistics.median(times["generative_ce"])
        candidates = len(next(iter(built.values()))[1][0]["candidates"])
        for name in cases:
            step = statistics.median(times[name])
            row = {"setting": setting, "case": name, "step_s": round(step, 3), "vs_ce": round(step / base, 2),
                   "candidates": candidates, "steps_timed": len(times[name]),
                   "load_1min": round(os.getloadavg()[0], 2), **info}
            print(json.dumps(row))
            table.append([setting, candidates, name, row["step_s"], f"{row['vs_ce']}x"])
        del built
    print(f"\nmachine: {info['machine']}; load average {os.getloadavg()[0]:.2f} at the end; commit {info['commit']}; "
          f"batch {a.batch}, {a.rounds} rounds x {a.steps} steps per case, median step\n")
    print_table(["setting", "candidates", "case", "step s", "vs generative_ce"], table)


if __name__ == "__main__":
    main()
