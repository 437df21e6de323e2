"""Prediction export: JSON lines, and the official scorers' answer formats.

The SemEval file is ``<id><TAB><label>`` per line with a final newline, the
format the official scorer (semeval2010_task8_scorer-v1.2.pl) reads, for
both the proposed answers and the key::

    perl semeval2010_task8_scorer-v1.2.pl proposed.txt key.txt

The TACRED file (TACRED, TACREV, Re-TACRED: the official ``score.py``) is one
label a line in the test file's order, ``no_relation`` for none.
:func:`official_answers` converts the prediction rows ``relforge evaluate
--output`` and a run's ``predictions-test.jsonl`` hold (``relforge data
export``).
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


#: official answer formats: name -> (what it is, the label written for no relation)
OFFICIAL_FORMATS = {
    "semeval": ("SemEval-2010 Task 8: <id><TAB><label>, for semeval2010_task8_scorer-v1.2.pl", SEMEVAL_OTHER),
    "tacred": ("TACRED/TACREV/Re-TACRED: one label a line in file order, for the official score.py", "no_relation"),
}


def official_answers(rows: Sequence[Mapping[str, Any]], fmt: str, *, where: str = "predictions") \
        -> tuple[list[str], list[str], str | None]:
    """(proposed lines, key lines, a note or None) in the official format
    ``fmt`` for prediction rows (``id``, ``gold`` and ``prediction`` lists).
    The formats are single-label: a row with several predicted relations is
    refused, naming it. SemEval needs numeric sentence ids; rows whose ids
    are not numbers are numbered by position (1, 2, ...) in both files, and
    the note says so."""
    if fmt not in OFFICIAL_FORMATS:
        raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(OFFICIAL_FORMATS)}")
    none = OFFICIAL_FORMATS[fmt][1]

    def one(labels: Any, n: int, field: str) -> str:
        labels = [labels] if isinstance(labels, str) else list(labels or [])
        labels = [lab for lab in labels if lab != none]
        if len(labels) > 1:
            raise ValueError(f"{where}, row {n}: {len(labels)} {field} relations {sorted(labels)}; the {fmt} "
                             f"format has one label per example (multi-label data has no official answer "
                             f"format: keep the JSON-lines predictions)")
        return labels[0] if labels else none

    numeric = fmt == "semeval" and all(str(r.get("id", "")).isdigit() for r in rows)
    proposed, key = [], []
    for n, row in enumerate(rows, 1):
        for field in ("prediction", "gold"):
            if field not in row:
                raise ValueError(f"{where}, row {n}: no {field!r} (a prediction file of `relforge evaluate "
                                 f"--output` or a run's predictions-test.jsonl has id, gold and prediction)")
        pred, gold = one(row["prediction"], n, "predicted"), one(row["gold"], n, "gold")
        if fmt == "semeval":
            sid = row["id"] if numeric else n
            proposed.append(f"{sid}\t{pred}\n")
            key.append(f"{sid}\t{gold}\n")
        else:
            proposed.append(f"{pred}\n")
            key.append(f"{gold}\n")
    note = None if fmt != "semeval" or numeric else (
        "the ids are not SemEval sentence numbers: the answers are numbered by row (1, 2, ...) in both files")
    return proposed, key, note
