"""Prediction export: JSON lines, and SemEval's answer-key format.

The SemEval file is ``<id><TAB><label>`` per line with a final newline, the
format the official scorer (semeval2010_task8_scorer-v1.2.pl) reads, for
both the proposed answers and the key::

    perl semeval2010_task8_scorer-v1.2.pl proposed.txt key.txt
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from relforge.data.example import Example
from relforge.data.io import write_jsonl
from relforge.data.metrics import SEMEVAL_OTHER, as_relation_set, semeval_label


def prediction_rows(examples: Sequence[Example], predictions: Sequence[Any], *,
                    scores: Sequence[Mapping[str, float]] | None = None,
                    no_relation: str | None = None) -> list[dict[str, Any]]:
    if len(examples) != len(predictions):
        raise ValueError(f"{len(examples)} examples but {len(predictions)} predictions")
    rows = []
    for i, (ex, pred) in enumerate(zip(examples, predictions)):
        row: dict[str, Any] = {
            "id": ex.id, "head": ex.head.text, "tail": ex.tail.text,
            "gold": sorted(ex.relations), "prediction": sorted(as_relation_set(pred, no_relation)),
        }
        if ex.doc_id is not None:
            row["doc_id"] = ex.doc_id
        if ex.sent_id is not None:
            row["sent_id"] = ex.sent_id
        if scores is not None:
            row["scores"] = dict(scores[i])
        rows.append(row)
    return rows


def write_predictions_jsonl(path: str | Path, examples: Sequence[Example], predictions: Sequence[Any], *,
                            scores: Sequence[Mapping[str, float]] | None = None,
                            no_relation: str | None = None) -> Path:
    """One JSON object a line: id, head, tail, gold and predicted relations
    (lists; empty = no relation), doc/sentence ids and optional scores."""
    path = Path(path)
    write_jsonl(path, prediction_rows(examples, predictions, scores=scores, no_relation=no_relation))
    return path


def semeval_id(ex: Example) -> int:
    sid = ex.meta.get("semeval_id", ex.id)
    try:
        return int(sid)
    except (TypeError, ValueError):
        raise ValueError(f"example {ex.id!r} has no numeric SemEval sentence id (meta['semeval_id']); the "
                         f"answer-key format needs one") from None


def write_semeval_answers(path: str | Path, examples: Sequence[Example], predictions: Sequence[Any] | None = None) \
        -> Path:
    """``id<TAB>label`` lines: the predictions, or the gold labels when
    ``predictions`` is None (a directed answer key for the scorer)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if predictions is not None and len(predictions) != len(examples):
        raise ValueError(f"{len(examples)} examples but {len(predictions)} predictions")
    lines = []
    for i, ex in enumerate(examples):
        if predictions is None:
            label = semeval_label(ex)
        else:
            rels = as_relation_set(predictions[i], SEMEVAL_OTHER)
            if len(rels) > 1:
                raise ValueError(f"example {ex.id}: SemEval is single-label, got {sorted(rels)}")
            label = next(iter(rels)) if rels else SEMEVAL_OTHER
        lines.append(f"{semeval_id(ex)}\t{label}\n")
    with path.open("w", encoding="utf-8", newline="\n") as f:
        f.writelines(lines)
    return path


def write_examples_jsonl(path: str | Path, examples: Sequence[Example]) -> Path:
    """Examples in the generic JSON-lines format (readable by the ``jsonl`` dataset)."""
    path = Path(path)
    write_jsonl(path, (ex.to_dict() for ex in examples))
    return path
