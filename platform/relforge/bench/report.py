"""Aggregating a suite's cells over seeds into tables and figures."""
from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SEED_KEYS = ("seed", "data.sampling.seed")


@dataclass
class Aggregate:
    group: dict[str, Any]       # the cell's coordinates without the seed axes
    metric: str
    mean: float
    std: float                  # sample standard deviation (0 for one value)
    count: int
    dataset: str = ""           # the data set the group's cells ran on ("" unknown)


def aggregate(rows: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> list[Aggregate]:
    """``rows``: ``{"coordinates": {...}, "metrics": {...}}`` per finished cell."""
    groups: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    coords_of: dict[tuple, dict[str, Any]] = {}
    dataset_of: dict[tuple, str] = {}
    for row in rows:
        group = {k: v for k, v in row["coordinates"].items() if k not in SEED_KEYS}
        key = tuple(sorted((k, str(v)) for k, v in group.items()))
        coords_of[key] = group
        dataset_of[key] = str(row.get("dataset") or "")
        for m in metrics:
            if m in row["metrics"] and row["metrics"][m] is not None:
                groups[key][m].append(float(row["metrics"][m]))
    out = []
    for key, by_metric in groups.items():
        for m in metrics:
            values = by_metric.get(m, [])
            if not values:
                continue
            mean = sum(values) / len(values)
            std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
            out.append(Aggregate(coords_of[key], m, mean, std, len(values), dataset_of[key]))
    return out


#: logged figures that are not scores (no "best" among them)
NOT_SCORES = ("tuned_threshold", "seconds", "episodes", "ci95", "ci95_low", "ci95_high", "std", "tp", "fp", "fn",
              "n_pred", "n_gold", "multi_pairs", "coverage")


def metric_direction(name: str) -> int:
    """+1 when larger is better, -1 when smaller is (losses), 0 when the
    figure is not a score (a tuned threshold, a count, a time)."""
    key = name.split("/")[-1]
    if key in NOT_SCORES or key.endswith(("_threshold", "_examples", "_pairs")) or key.startswith("untuned_"):
        return 0
    return -1 if "loss" in key else 1


def _value(a: Aggregate) -> str:
    if a.count == 1:
        return f"{a.mean:.4f} (1 seed)"
    return f"{a.mean:.4f} ± {a.std:.4f} (n={a.count})"


def best_and_runner_up(aggs: Sequence[Aggregate], metric: str) -> list[tuple[str, str, str, str]]:
    """Per column and data set of ``metric``: (column, best row, runner-up
    row, data set), by the metric's direction."""
    direction = metric_direction(metric)
    if direction == 0:
        return []
    rows, cols, table = pivot(aggs, metric)
    out = []
    for c in cols:
        by_set: dict[str, list[tuple[float, str]]] = defaultdict(list)
        for r in rows:
            if (r, c) in table:
                by_set[table[(r, c)].dataset].append((direction * table[(r, c)].mean, r))
        for dataset, entries in by_set.items():
            if len(entries) >= 2:
                entries.sort(reverse=True)
                out.append((c, entries[0][1], entries[1][1], dataset))
    return out


def _row_axis(aggs: Sequence[Aggregate]) -> str | None:
    keys = list(aggs[0].group) if aggs else []
    return "method" if "method" in keys else (keys[0] if keys else None)


def pivot(aggs: Sequence[Aggregate], metric: str) -> tuple[list[str], list[str], dict[tuple[str, str], Aggregate]]:
    """Rows: the method (or the first axis); columns: the other axes joined."""
    sel = [a for a in aggs if a.metric == metric]
    row_axis = _row_axis(sel)
    table: dict[tuple[str, str], Aggregate] = {}
    rows, cols = [], []
    for a in sel:
        r = str(a.group.get(row_axis, "all")) if row_axis else "all"
        c = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in a.group.items() if k != row_axis) or metric
        table[(r, c)] = a
        if r not in rows:
            rows.append(r)
        if c not in cols:
            cols.append(c)
    return rows, cols, table


def markdown(aggs: Sequence[Aggregate], metrics: Sequence[str], title: str,
             significant: set[tuple[str, str, str]] | None = None) -> str:
    """The suite's table. ``significant``: (metric, row, column) cells whose
    lead over the runner-up on the same data set is significant; only those
    are bold."""
    significant = significant or set()
    lines = [f"# {title}", "", "Mean ± sample standard deviation over seeds (n = number of seeds; a single "
             "seed is shown as such). Bold: the best score in its column and data set, only where its lead over "
             "the next is significant (paired test on the test predictions, p < 0.05); figures that are not "
             "scores are never bold.", ""]
    for m in metrics:
        rows, cols, table = pivot(aggs, m)
        if not rows:
            continue
        mixed = len({a.dataset for a in table.values()}) > 1
        head = "| | data set | " if mixed else "| | "
        lines += [f"## {m}", "", head + " | ".join(cols) + " |", "|---|" + "---|" * (len(cols) + mixed)]
        for r in rows:
            cells = []
            for c in cols:
                a = table.get((r, c))
                if a is None:
                    cells.append("")
                    continue
                text = _value(a)
                cells.append(f"**{text}**" if (m, r, c) in significant else text)
            sets = sorted({table[(r, c)].dataset for c in cols if (r, c) in table})
            label = f"| {r} | {', '.join(s or '?' for s in sets)} | " if mixed else f"| {r} | "
            lines.append(label + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def write_report(aggs: Sequence[Aggregate], metrics: Sequence[str], folder: Path, title: str,
                 significant: set[tuple[str, str, str]] | None = None, extra: str = "") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    md = folder / "report.md"
    md.write_text(markdown(aggs, metrics, title, significant) + ("\n" + extra if extra else ""), encoding="utf-8")
    table = folder / "report.csv"
    keys = sorted({k for a in aggs for k in a.group})
    with table.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow([*keys, "metric", "mean", "std", "count"])
        for a in aggs:
            w.writerow([*(a.group.get(k, "") for k in keys), a.metric, f"{a.mean:.6f}", f"{a.std:.6f}", a.count])
    return [md, table, *figures(aggs, metrics, folder)]


NUMERIC_AXES = ("data.sampling.k", "data.sampling.ratio", "k", "shots", "ratio")


def figures(aggs: Sequence[Aggregate], metrics: Sequence[str], folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    for m in metrics:
        rows, cols, table = pivot(aggs, m)
        if not rows:
            continue
        fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(cols) * max(1, len(rows)) / 2), 4))
        width = 0.8 / len(rows)
        for i, r in enumerate(rows):
            xs = [j + i * width for j, c in enumerate(cols) if (r, c) in table]
            ys = [table[(r, c)].mean for c in cols if (r, c) in table]
            es = [table[(r, c)].std for c in cols if (r, c) in table]
            ax.bar(xs, ys, width, yerr=es, capsize=3, label=r)
        ax.set_xticks([j + width * (len(rows) - 1) / 2 for j in range(len(cols))], cols, rotation=20,
                      ha="right", fontsize=8)
        out.append(_save(plt, fig, ax, m, folder / f"bar-{m.replace('/', '_')}.png"))
        axis = next((a for a in NUMERIC_AXES if any(a in g.group for g in aggs)), None)
        if axis is None:
            continue
        fig, ax = plt.subplots(figsize=(5, 4))
        row_axis = _row_axis([a for a in aggs if a.metric == m])
        series: dict[str, list[Aggregate]] = defaultdict(list)
        for a in aggs:
            if a.metric == m and axis in a.group:
                series[str(a.group.get(row_axis, "all"))].append(a)
        for name, pts in series.items():
            pts.sort(key=lambda a: float(a.group[axis]))
            ax.errorbar([float(a.group[axis]) for a in pts], [a.mean for a in pts], [a.std for a in pts],
                        marker="o", capsize=3, label=name)
        ax.set_xlabel(axis)
        out.append(_save(plt, fig, ax, m, folder / f"curve-{m.replace('/', '_')}.png"))
    return out


def _save(plt, fig, ax, metric: str, path: Path) -> Path:
    ax.set_ylabel(metric)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
