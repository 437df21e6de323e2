"""Descriptive statistics of a data set (``relforge data stats``)."""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from relforge.data.errors import DataError
from relforge.data.example import Example

PERCENTILES = (50, 90, 95, 99, 100)


def percentile(sorted_values: Sequence[int], q: float) -> float:
    """Linear-interpolation percentile (numpy's default) of sorted values."""
    if not sorted_values:
        return 0.0
    pos = (len(sorted_values) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def split_stats(examples: Sequence[Example], no_relation: str | None = None) -> dict[str, Any]:
    labels: Counter = Counter()
    for ex in examples:
        if ex.relations:
            labels.update(ex.relations)
        else:
            labels[no_relation or "<no relation>"] += 1
    lengths = sorted(len(ex.tokens) for ex in examples)
    return {
        "examples": len(examples),
        "sentences": len({ex.sent_id for ex in examples if ex.sent_id is not None}) or None,
        "no_relation": sum(1 for ex in examples if not ex.relations),
        "multi_relation_pairs": sum(1 for ex in examples if len(ex.relations) > 1),
        "relation_instances": sum(len(ex.relations) for ex in examples),
        "labels": dict(labels.most_common()),
        "length_tokens": {f"p{q}": percentile(lengths, q) for q in PERCENTILES},
    }


def dataset_stats(dataset: Any, data_dir: Path | None, splits: Sequence[str] | None = None) -> dict[str, Any]:
    """Statistics per split; a split whose file is missing is listed under
    ``missing`` with the reason instead of failing the whole report."""
    out: dict[str, Any] = {"dataset": dataset.name, "splits": {}, "missing": {}}
    for split in splits or dataset.splits():
        try:
            examples = dataset.read(split, data_dir)
        except (DataError, FileNotFoundError) as exc:
            if splits:  # asked for explicitly: an error
                raise
            out["missing"][split] = str(exc)
            continue
        s = split_stats(examples, dataset.no_relation)
        rep = getattr(dataset, "reports", {}).get(split)
        if rep is not None:
            s["records"] = rep.records
            s["skipped"] = dict(rep.skipped)
            s["files"] = rep.files
            s["notes"] = rep.notes
        out["splits"][split] = s
    if not out["splits"]:
        raise DataError(f"no split of dataset {dataset.name!r} could be read:\n" +
                        "\n".join(f"- {k}: {v}" for k, v in out["missing"].items()))
    return out
