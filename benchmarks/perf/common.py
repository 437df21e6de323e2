"""What every script in benchmarks/perf/ prints beside its figures (imported as ``common``: the
scripts run as ``python benchmarks/perf/<name>.py``, which puts this folder on the path)."""
from __future__ import annotations

import subprocess
from pathlib import Path


def commit() -> str:
    """The short hash of the checked-out commit, or "?" outside a git checkout."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parent).stdout.strip() or "?"
    except OSError:
        return "?"


def print_table(header: list[str], rows: list[list]) -> None:
    """A Markdown table on stdout."""
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(v) for v in row) + " |")


def machine(threads: int) -> str:
    """The machine line of a torch benchmark: platform, CPUs, torch version, threads used."""
    import os
    import platform

    import torch

    return f"{platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {threads} thread(s)"


def build_for_training(overrides: list[str], *, train_rows: int | None = None):
    """(model, training features, AdamW over its trainable parameters) of a configuration given as
    ``key=value`` overrides, built as a run builds them (seed 0): what the step benchmarks time."""
    import torch

    from relforge.config import load_config
    from relforge.data import load_data
    from relforge.engine.build import build_model
    from relforge.registry import get_registry

    registry = get_registry()
    resolved = load_config(overrides=overrides, registry=registry)
    data = load_data(resolved.run.data, registry)
    words = {lab: data.verbalizer.words[lab] for lab in data.labels}
    torch.manual_seed(0)
    model = build_model(resolved, labels=data.labels, label_words=words, no_relation=data.no_relation,
                        registry=registry)
    feats = model.features(data.splits["train"][:train_rows], training=True)
    params = [p for p in model.parameters() if p.requires_grad]
    return model, feats, torch.optim.AdamW(params, lr=1e-4)


def time_steps(built: dict, *, rounds: int, steps: int, batch: int,
               bf16: set[str] | frozenset[str] = frozenset()) -> dict[str, list[float]]:
    """Seconds of full optimizer steps (forward, backward, AdamW) of each case in ``built`` (name ->
    ``build_for_training``'s triple), every case on the same batches, interleaved round by round so
    the cases' times are side by side on a noisy machine (the order reversed every other round). The
    cases named in ``bf16`` run their forward under CPU bf16 autocast, as the trainer does with
    ``train.mixed_precision: bf16``."""
    import time

    import torch

    n = min(len(f) for _, f, _ in built.values())
    if n <= batch:
        raise SystemExit(f"{n} training rows, not more than the batch ({batch}): lower --batch")
    times: dict[str, list[float]] = {name: [] for name in built}
    start = 0
    for r in range(rounds):
        order = list(built.items())
        if r % 2:  # each case goes first in every other round: first-step costs are not one case's
            order.reverse()
        for name, (model, feats, opt) in order:
            model.train()
            for s in range(steps):
                i = (start + s * batch) % (n - batch)
                rows = model.collate(feats[i:i + batch])
                t0 = time.perf_counter()
                opt.zero_grad(set_to_none=True)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=name in bf16):
                    loss = model(rows).loss
                loss.float().backward()
                opt.step()
                times[name].append(time.perf_counter() - t0)
        start += steps * batch
    return times
