"""Scores on the entity pairs with two or more gold relations (entity-pair
overlap), next to the overall scores.

Runs on multi-label data log these scores themselves (``test/multi_micro_f1``
etc., from the data layer's ``multilabel`` metric). This helper scores saved
``predictions-test.jsonl`` files (what
``relforge train`` and every suite cell write: ``gold`` and ``prediction``
lists per pair) overall and on the subset of pairs with at least
``min_relations`` gold relations::

    python -m relforge_cptuning.evaluation runs/bench/cptuning-nyt [--min-relations 2] [--json out.json]

Every ``predictions-test.jsonl`` under the given folders is scored; the cell
is named by its folder.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from relforge.data.metrics import multilabel_with_overlap


def subset_scores(gold: Sequence[Sequence[str]], predictions: Sequence[Sequence[str]], *,
                  min_relations: int = 2, no_relation: str | None = None) -> dict[str, float]:
    """Multi-label micro P/R/F1 overall and on the pairs with at least
    ``min_relations`` gold relations (keys prefixed ``multi_``), plus the
    size of that subset (``multi_pairs``) and of the whole (``pairs``)."""
    if len(gold) != len(predictions):
        raise ValueError(f"{len(gold)} gold sets but {len(predictions)} predictions")
    out = multilabel_with_overlap(list(gold), list(predictions), no_relation, min_relations)
    out["pairs"] = float(len(gold))
    return out


def read_predictions(path: str | Path) -> tuple[list[list[str]], list[list[str]]]:
    gold, pred = [], []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if "gold" not in row or "prediction" not in row:
                raise ValueError(f"{path}:{n}: a predictions file line needs 'gold' and 'prediction'")
            gold.append(list(row["gold"]))
            pred.append(list(row["prediction"]))
    return gold, pred


def score_runs(folders: Sequence[str | Path], min_relations: int = 2) -> list[dict[str, Any]]:
    rows = []
    for folder in folders:
        folder = Path(folder)
        files = [folder] if folder.is_file() else sorted(folder.rglob("predictions-test.jsonl"))
        if not files:
            raise FileNotFoundError(f"no predictions-test.jsonl under {folder}")
        for f in files:
            gold, pred = read_predictions(f)
            rel = f.parent.relative_to(folder) if f.parent != folder and folder.is_dir() else f.parent.name
            rows.append({"run": str(rel), "file": str(f), **subset_scores(gold, pred, min_relations=min_relations)})
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m relforge_cptuning.evaluation", description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", help="run or suite folders (or predictions files)")
    ap.add_argument("--min-relations", type=int, default=2)
    ap.add_argument("--json", help="also write the rows as JSON here")
    a = ap.parse_args(argv)
    rows = score_runs(a.folders, a.min_relations)
    head = f"{'run':60s} {'P':>7s} {'R':>7s} {'F1':>7s} | {'>=' + str(a.min_relations) + ' rel: P':>12s} {'R':>7s} " \
           f"{'F1':>7s} {'pairs':>6s}"
    print(head)
    for r in rows:
        print(f"{r['run'][-60:]:60s} {r['precision']:7.4f} {r['recall']:7.4f} {r['micro_f1']:7.4f} | "
              f"{r['multi_precision']:12.4f} {r['multi_recall']:7.4f} {r['multi_micro_f1']:7.4f} "
              f"{int(r['multi_pairs']):6d}")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
