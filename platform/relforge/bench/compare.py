"""Paired comparisons of a suite's arms from the prediction files its cells wrote.

An *arm* is a group of cells that differ only in their seed axes. Two arms
are compared when they differ in the coordinates the suite's
``compare.baseline`` names (``compare: {baseline: {method: generative_ce}}``:
every arm against the arm with ``method: generative_ce`` and the same other
coordinates), or, without a ``compare`` section, in exactly one coordinate.
Both arms must have been scored on the same test examples (same ids, same
order), and seeds are paired by value (seed 13 of A with seed 13 of B).
The statistics are :mod:`relforge.stats`'.
"""
from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relforge.bench.report import SEED_KEYS
from relforge.stats import COUNT_METRICS, PairedResult, compare_arms, count_metric

PREDICTIONS = ("predictions-test.jsonl", "predictions-test-episodes.jsonl")


@dataclass
class ScoredRun:
    """One finished run's test predictions: ids, gold and predicted label lists."""

    folder: Path
    ids: list[str]
    gold: list[list[str]]
    predictions: list[list[str]]


def read_predictions(folder: str | Path) -> ScoredRun:
    """The test predictions a run wrote (``predictions-test.jsonl``, or the
    episode file: one query a line, its single gold and predicted label)."""
    folder = Path(folder)
    for name in PREDICTIONS:
        path = folder / name
        if not path.exists():
            continue
        ids, gold, pred = [], [], []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                p = row["prediction"]
                ids.append(f"{row['episode']}:{row['id']}" if "episode" in row else str(row["id"]))
                gold.append(list(row["gold"]))
                pred.append([p] if isinstance(p, str) else list(p))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{n}: not a prediction row ({type(exc).__name__}: {exc})") from None
        return ScoredRun(folder, ids, gold, pred)
    raise FileNotFoundError(f"{folder} has no test predictions ({' or '.join(PREDICTIONS)}): was its run "
                            f"scored on a test split?")


def testable(metric: str) -> bool:
    """A logged test metric that :mod:`relforge.stats` can recompute from the
    predictions (``test/micro_f1``, ``test/official_macro_f1``,
    ``test/accuracy``); not a sub-figure such as ``test/way10_direction/micro_f1``."""
    return metric.startswith("test/") and metric.removeprefix("test/") in COUNT_METRICS


def arm_key(coordinates: Mapping[str, Any]) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in coordinates.items() if k not in SEED_KEYS))


def seed_of(coordinates: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={coordinates[k]}" for k in SEED_KEYS if k in coordinates) or "-"


def arm_name(key: tuple) -> str:
    return ", ".join(f"{k.split('.')[-1]}={v}" for k, v in key) or "all"


@dataclass
class Comparison:
    arm: str
    baseline: str
    result: PairedResult
    differs_in: list[str] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        return {"arm": self.arm, "baseline": self.baseline, **self.result.as_dict()}


def pairs(arms: Sequence[tuple], baseline: Mapping[str, Any] | None) -> list[tuple[tuple, tuple, list[str]]]:
    """(arm, baseline arm, coordinates they differ in) to compare."""
    out = []
    as_dict = {a: dict(a) for a in arms}
    for a in arms:
        for b in arms:
            if a == b:
                continue
            da, db = as_dict[a], as_dict[b]
            differ = sorted(k for k in set(da) | set(db) if da.get(k) != db.get(k))
            if baseline:
                wanted = {k: str(v) for k, v in baseline.items()}
                is_base = all(db.get(k) == v for k, v in wanted.items())
                a_is_base = all(da.get(k) == v for k, v in wanted.items())
                if is_base and not a_is_base and set(differ) <= set(wanted):
                    out.append((a, b, differ))
            elif len(differ) == 1 and str(a) < str(b):
                out.append((a, b, differ))
    return out


def compare_cells(cells: Sequence[tuple[Mapping[str, Any], Path]], metrics: Sequence[str],
                  baseline: Mapping[str, Any] | None = None, *, n_resamples: int = 10_000,
                  seed: int = 0) -> tuple[list[Comparison], list[str]]:
    """Comparisons of the arms of finished ``cells`` ((coordinates, run
    folder) each), for every metric with a per-example form; and notes on
    what could not be compared (said, never skipped silently)."""
    runs: dict[tuple, dict[str, ScoredRun]] = defaultdict(dict)
    notes: list[str] = []
    for coords, folder in cells:
        try:
            runs[arm_key(coords)][seed_of(coords)] = read_predictions(folder)
        except (FileNotFoundError, ValueError) as exc:
            notes.append(f"{arm_name(arm_key(coords))} ({seed_of(coords)}): {exc}")
    usable = [m for m in metrics if testable(m)]
    for m in metrics:
        if m not in usable and m.startswith("test/"):
            notes.append(f"{m}: no per-example form; not tested (paired tests cover "
                         f"{', '.join(sorted(COUNT_METRICS))})")
    comparisons = []
    for a, b, differ in pairs(sorted(runs), baseline):
        ra, rb = runs[a], runs[b]
        common = sorted(set(ra) & set(rb))
        if not common:
            notes.append(f"{arm_name(a)} vs {arm_name(b)}: no common seed")
            continue
        ids = ra[common[0]].ids
        mismatch = [s for s in common if ra[s].ids != ids or rb[s].ids != ids]
        if mismatch:
            notes.append(f"{arm_name(a)} vs {arm_name(b)}: not scored on the same test examples (seeds "
                         f"{', '.join(mismatch)}); not compared")
            continue
        gold = ra[common[0]].gold
        for m in usable:
            metric = count_metric(m)
            result = compare_arms(gold, {s: ra[s].predictions for s in common},
                                  {s: rb[s].predictions for s in common}, metric, n_resamples=n_resamples,
                                  seed=seed)
            result.metric = m
            comparisons.append(Comparison(arm_name(a), arm_name(b), result, differ))
    return comparisons, notes


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:+.4f}"


def comparison_markdown(comparisons: Sequence[Comparison], notes: Sequence[str], alpha: float = 0.05,
                        resamples: int = 10_000) -> str:
    lines = ["## Paired comparisons", "",
             "Δ = arm - baseline, the mean over paired seeds; 95% CI (examples): paired bootstrap over the test "
             "examples; 95% CI (seeds): t-interval over the per-seed differences; p: two-sided approximate "
             f"randomisation over (seed, example) pairs, {resamples:,} resamples, seeded. Significant at p < {alpha}: "
             "marked *.", ""]
    if comparisons:
        lines += ["| arm | baseline | metric | arm mean | baseline mean | Δ | 95% CI (examples) | 95% CI (seeds) "
                  "| p | seeds | test examples |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for c in comparisons:
            r = c.result
            seeds_ci = ("n/a (1 seed)" if r.seed_ci_low is None else
                        f"[{_fmt(r.seed_ci_low)}, {_fmt(r.seed_ci_high)}]")
            star = " *" if r.p_value < alpha else ""
            lines.append(f"| {c.arm} | {c.baseline} | {r.metric} | {r.mean_a:.4f} | {r.mean_b:.4f} | "
                         f"{_fmt(r.delta)}{star} | [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}] | {seeds_ci} | "
                         f"{r.p_value:.4f} | {r.seeds} | {r.examples} |")
    else:
        lines.append("No pair of arms could be compared.")
    if notes:
        lines += ["", "Not compared:", ""] + [f"* {n}" for n in notes]
    return "\n".join(lines) + "\n"


def comparisons_csv(comparisons: Sequence[Comparison], path: Path) -> Path | None:
    """The comparison table as CSV (one row per arm, baseline and metric),
    for a spreadsheet or pandas; None when nothing was compared."""
    if not comparisons:
        return None
    import pandas as pd

    rows = [{"arm": c.arm, "baseline": c.baseline, "metric": c.result.metric, "arm_mean": c.result.mean_a,
             "baseline_mean": c.result.mean_b, "delta": c.result.delta, "ci_low": c.result.ci_low,
             "ci_high": c.result.ci_high, "seed_ci_low": c.result.seed_ci_low,
             "seed_ci_high": c.result.seed_ci_high, "p": c.result.p_value, "seeds": c.result.seeds,
             "test_examples": c.result.examples, "differs_in": " ".join(c.differs_in)} for c in comparisons]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def forest_plot(comparisons: Sequence[Comparison], path: Path) -> Path | None:
    """Δ with its 95% CI (examples) per comparison, one row each."""
    if not comparisons:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.5 * len(comparisons) + 1.6))
    ys = list(range(len(comparisons)))[::-1]
    for y, c in zip(ys, comparisons):
        r = c.result
        ax.errorbar([r.delta], [y], xerr=[[r.delta - r.ci_low], [r.ci_high - r.delta]], fmt="o", capsize=3,
                    color="tab:red" if r.p_value < 0.05 else "tab:gray")
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_yticks(ys, [f"{c.arm} vs {c.baseline}\n{c.result.metric}, {c.result.seeds} seed"
                       f"{'s' if c.result.seeds != 1 else ''}, p={c.result.p_value:.3g}" for c in comparisons],
                  fontsize=8)
    ax.set_xlabel("Δ = arm - baseline (95% CI over test examples; red: p < 0.05)")
    ax.set_title("Paired comparisons", fontsize=10)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def mlflow_metrics(comparisons: Sequence[Comparison]) -> dict[str, float]:
    """``compare/<arm>_vs_<baseline>/<metric>_{delta,ci_low,ci_high,p}`` for the parent run."""
    import re

    out = {}
    for c in comparisons:
        key = re.sub(r"[^A-Za-z0-9_.\-/ ]", "_", f"compare/{c.arm}_vs_{c.baseline}").replace(" ", "")
        metric = c.result.metric.split("/")[-1]
        r = c.result
        out.update({f"{key}/{metric}_delta": r.delta, f"{key}/{metric}_ci_low": r.ci_low,
                    f"{key}/{metric}_ci_high": r.ci_high, f"{key}/{metric}_p": r.p_value})
    return out


def compare_groups(cells: Sequence[tuple[Mapping[str, Any], Path]], group_a: Mapping[str, Any],
                   group_b: Mapping[str, Any], metric: str, *, n_resamples: int = 10_000,
                   seed: int = 0) -> PairedResult | None:
    """Arm ``group_a`` against ``group_b`` (coordinates without seeds) on
    ``metric``; None when it cannot be tested (no per-example form, no
    predictions, no common seed, different test examples)."""
    if not testable(metric):
        return None
    ka, kb = arm_key(group_a), arm_key(group_b)
    chosen = [(c, f) for c, f in cells if arm_key(c) in (ka, kb)]
    found, _ = compare_cells(chosen, [metric], dict(kb), n_resamples=n_resamples, seed=seed)
    match = [c for c in found if c.arm == arm_name(ka) and c.baseline == arm_name(kb)]
    return match[0].result if match else None
