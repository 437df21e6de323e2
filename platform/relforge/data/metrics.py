"""Metrics: TACRED micro-F1, the official SemEval-2010 Task 8 scores,
multi-label micro P/R/F1 (NYT), and episode accuracy with a 95% CI.

All scores are fractions in [0, 1] (the SemEval scorer prints percentages:
multiply by 100 to compare).

A prediction is a label string, ``None`` (no relation) or a collection of
labels (multi-label); the data set's no-relation label counts as none.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from relforge.data.example import Example

Prediction = Any  # str | None | Collection[str]


def as_relation_set(pred: Prediction, no_relation: str | None = None) -> frozenset[str]:
    """A prediction as a set of relations, the no-relation label removed."""
    if pred is None:
        return frozenset()
    if isinstance(pred, str):
        labels: Iterable[str] = [pred]
    elif isinstance(pred, Collection):
        labels = pred
    else:
        raise TypeError(f"a prediction must be a label, None or a collection of labels, got {pred!r}")
    return frozenset(p for p in labels if p and p != no_relation)


def _prf(tp: int, n_pred: int, n_gold: int) -> tuple[float, float, float]:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def _check_lengths(gold: Sequence, pred: Sequence) -> None:
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold labels but {len(pred)} predictions")


def micro_f1(gold: Sequence[Prediction], pred: Sequence[Prediction], no_relation: str | None = None) \
        -> dict[str, float]:
    """TACRED's scorer: micro P/R/F1 over the examples, where a prediction of
    no relation is never counted and a gold no-relation is never recalled.
    Single-label: each side is at most one relation. ``accuracy`` counts
    no-relation agreement too."""
    _check_lengths(gold, pred)
    tp = n_pred = n_gold = agree = 0
    for g, p in zip(gold, pred):
        gs, ps = as_relation_set(g, no_relation), as_relation_set(p, no_relation)
        if len(gs) > 1 or len(ps) > 1:
            raise ValueError("micro_f1 is single-label; use multilabel_prf for sets of relations")
        n_gold += len(gs)
        n_pred += len(ps)
        tp += len(gs & ps)
        agree += gs == ps
    p, r, f = _prf(tp, n_pred, n_gold)
    return {"precision": p, "recall": r, "micro_f1": f, "accuracy": agree / len(gold) if gold else 0.0,
            "tp": tp, "n_pred": n_pred, "n_gold": n_gold}


def multilabel_prf(gold: Sequence[Prediction], pred: Sequence[Prediction], no_relation: str | None = None) \
        -> dict[str, float]:
    """Micro P/R/F1 over (pair, relation) decisions: every gold relation of a
    pair is one item to recall, every predicted relation one item of
    precision (NYT's entity-pair overlap)."""
    _check_lengths(gold, pred)
    tp = n_pred = n_gold = exact = 0
    for g, p in zip(gold, pred):
        gs, ps = as_relation_set(g, no_relation), as_relation_set(p, no_relation)
        tp += len(gs & ps)
        n_pred += len(ps)
        n_gold += len(gs)
        exact += gs == ps
    p, r, f = _prf(tp, n_pred, n_gold)
    return {"precision": p, "recall": r, "micro_f1": f, "exact_match": exact / len(gold) if gold else 0.0,
            "tp": tp, "n_pred": n_pred, "n_gold": n_gold}


def multilabel_with_overlap(gold: Sequence[Prediction], pred: Sequence[Prediction], no_relation: str | None = None,
                            min_relations: int = 2) -> dict[str, float]:
    """:func:`multilabel_prf` overall, and the same scores (keys prefixed
    ``multi_``) on the pairs with at least ``min_relations`` gold relations
    (entity-pair overlap), with their count ``multi_pairs``."""
    out = {k: float(v) for k, v in multilabel_prf(gold, pred, no_relation).items()}
    idx = [i for i, g in enumerate(gold) if len(as_relation_set(g, no_relation)) >= min_relations]
    sub = multilabel_prf([gold[i] for i in idx], [pred[i] for i in idx], no_relation)
    out.update({f"multi_{k}": float(v) for k, v in sub.items()})
    out["multi_pairs"] = float(len(idx))
    return out


# --- SemEval-2010 Task 8 ------------------------------------------------------------

SEMEVAL_OTHER = "Other"
_DIRECTION = re.compile(r"\(e[12],e[12]\)$")
_VALID = re.compile(r"^(Cause-Effect|Component-Whole|Content-Container|Entity-Destination|Entity-Origin|"
                    r"Instrument-Agency|Member-Collection|Message-Topic|Product-Producer)\((e1,e2|e2,e1)\)$")
WRONG_DIR = "WRONG_DIR"


def _semeval_check(label: str, what: str, sid: Any) -> str:
    if label != SEMEVAL_OTHER and not _VALID.match(label):
        raise ValueError(f"{what} for id {sid}: {label!r} is not a SemEval-2010 Task 8 label "
                         f"(e.g. 'Cause-Effect(e1,e2)' or 'Other')")
    return label


def _semeval_block(pairs: list[tuple[str, str]], gold_all: list[str], total_proposed: int, total_answer: int,
                   use_wrong_dir: bool) -> dict[str, Any]:
    """One evaluation block of the scorer: ``pairs`` are (proposed, gold) in
    this block's label space (WRONG_DIR as proposed label in the directional
    10-way block); ``gold_all`` every gold label (skipped ones too)."""
    conf: Counter = Counter(pairs)
    proposed_cnt: Counter = Counter(p for p, _ in pairs)
    answer_cnt: Counter = Counter(gold_all)
    correct = sum(conf[(lab, lab)] for lab in answer_cnt)
    answered_per_gold = Counter(g for _, g in pairs)
    other_skipped = answer_cnt[SEMEVAL_OTHER] - answered_per_gold[SEMEVAL_OTHER]
    per_relation = {}
    macro_p = macro_r = macro_f = 0.0
    micro_correct = micro_proposed = micro_answer = 0
    for lab in sorted(answer_cnt):
        wrong_dir = conf[(WRONG_DIR, lab)] if use_wrong_dir else 0
        tp = conf[(lab, lab)]
        # the scorer's precision: 0 when the label was never proposed (v1.2)
        p = 0.0 if proposed_cnt[lab] == 0 else tp / (proposed_cnt[lab] + wrong_dir)
        r = tp / answer_cnt[lab] if answer_cnt[lab] else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        per_relation[lab] = {"precision": p, "recall": r, "f1": f, "tp": tp,
                             "n_pred": proposed_cnt[lab] + wrong_dir, "n_gold": answer_cnt[lab],
                             "wrong_direction": wrong_dir}
        if lab != SEMEVAL_OTHER:
            macro_p += p
            macro_r += r
            macro_f += f
            micro_correct += tp
            micro_proposed += proposed_cnt[lab] + wrong_dir
            micro_answer += answer_cnt[lab]
    n_rel = len(answer_cnt) - (1 if SEMEVAL_OTHER in answer_cnt else 0)
    mp, mr, mf = _prf(micro_correct, micro_proposed, micro_answer)
    return {
        "coverage": total_proposed / total_answer if total_answer else 0.0,
        "accuracy": correct / total_proposed if total_proposed else 0.0,
        "accuracy_skipped_as_wrong": correct / total_answer if total_answer else 0.0,
        "accuracy_skipped_as_other": (correct + other_skipped) / total_answer if total_answer else 0.0,
        "micro_precision": mp, "micro_recall": mr, "micro_f1": mf,
        "macro_precision": macro_p / n_rel if n_rel else 0.0,
        "macro_recall": macro_r / n_rel if n_rel else 0.0,
        "macro_f1": macro_f / n_rel if n_rel else 0.0,
        "per_relation": per_relation,
        "confusion": {f"{p} -> {g}": n for (p, g), n in sorted(conf.items())},
    }


def semeval_official(gold: Mapping[Any, str], pred: Mapping[Any, str]) -> dict[str, Any]:
    """The SemEval-2010 Task 8 scorer v1.2's figures, computed as it does.

    ``gold`` and ``pred`` map sentence id -> label (``Cause-Effect(e1,e2)``,
    ``Other``). ``pred`` may cover a subset of the ids (skipped examples).
    Returns ``official_macro_f1`` (the official score: macro-F1 over the 9
    relations, (9+1)-way, a right relation with the wrong direction counted
    wrong but as a prediction of that relation) and three blocks:
    ``way19`` (2*9+1 directed labels), ``way10_no_direction`` and
    ``way10_direction`` (official), each with accuracy, coverage, micro and
    macro P/R/F1 excluding Other, and per-relation scores.
    """
    gold = {k: _semeval_check(v, "gold", k) for k, v in gold.items()}
    unknown = [k for k in pred if k not in gold]
    if unknown:
        raise ValueError(f"predictions for ids not in the answer key: {unknown[:5]}")
    pred = {k: _semeval_check(v, "prediction", k) for k, v in pred.items()}
    strip = lambda s: _DIRECTION.sub("", s)  # noqa: E731
    pairs19, pairs_nodir, pairs_dir = [], [], []
    for sid, p in pred.items():
        g = gold[sid]
        pairs19.append((p, g))
        pn, gn = strip(p), strip(g)
        pairs_nodir.append((pn, gn))
        if p == g or pn != gn:
            pairs_dir.append((pn, gn))
        else:
            pairs_dir.append((WRONG_DIR, gn))
    gold19 = list(gold.values())
    gold10 = [strip(g) for g in gold19]
    n_prop, n_ans = len(pred), len(gold)
    way19 = _semeval_block(pairs19, gold19, n_prop, n_ans, False)
    nodir = _semeval_block(pairs_nodir, gold10, n_prop, n_ans, False)
    withdir = _semeval_block(pairs_dir, gold10, n_prop, n_ans, True)
    return {"official_macro_f1": withdir["macro_f1"], "way19": way19, "way10_no_direction": nodir,
            "way10_direction": withdir}


def semeval_flat(result: Mapping[str, Any]) -> dict[str, float]:
    """The scalar figures of :func:`semeval_official`, as a flat dict."""
    out = {"official_macro_f1": result["official_macro_f1"]}
    for block in ("way19", "way10_no_direction", "way10_direction"):
        for key, v in result[block].items():
            if isinstance(v, (int, float)):
                out[f"{block}/{key}"] = float(v)
    return out


# --- few-shot episodes ---------------------------------------------------------------------

def episode_accuracy(per_episode: Sequence[float] | Sequence[tuple[int, int]]) -> dict[str, float]:
    """Mean accuracy over episodes with its 95% confidence interval
    (normal approximation: 1.96 * sample std / sqrt(episodes)).

    ``per_episode``: each episode's accuracy, or (correct, total) pairs.
    """
    accs = []
    for e in per_episode:
        if isinstance(e, tuple):
            correct, total = e
            if total <= 0:
                raise ValueError("an episode with no query examples")
            accs.append(correct / total)
        else:
            accs.append(float(e))
    n = len(accs)
    if n == 0:
        raise ValueError("no episodes")
    mean = sum(accs) / n
    std = math.sqrt(sum((a - mean) ** 2 for a in accs) / (n - 1)) if n > 1 else 0.0
    half = 1.96 * std / math.sqrt(n)
    return {"accuracy": mean, "ci95": half, "ci95_low": mean - half, "ci95_high": mean + half,
            "std": std, "episodes": float(n)}


# --- one entry point ---------------------------------------------------------------------------

METRICS = ("micro_f1", "multilabel", "semeval", "episode_accuracy")


def semeval_label(ex: Example) -> str:
    if ex.meta.get("label"):
        return ex.meta["label"]
    return next(iter(ex.relations)) if ex.relations else SEMEVAL_OTHER


def evaluate(metric: str, examples: Sequence[Example], predictions: Sequence[Prediction],
             no_relation: str | None = None) -> dict[str, float]:
    """Score ``predictions`` (aligned with ``examples``) with ``metric``;
    returns a flat dict of floats (what a tracker logs). The headline score
    is ``micro_f1`` for micro_f1/multilabel and ``official_macro_f1`` for
    semeval. ``multilabel`` adds the same scores on the pairs holding two or
    more gold relations (``multi_micro_f1``, ..., and their count
    ``multi_pairs``)."""
    _check_lengths(examples, predictions)
    gold = [ex.relations for ex in examples]
    if metric == "micro_f1":
        return {k: float(v) for k, v in micro_f1(gold, predictions, no_relation).items()}
    if metric == "multilabel":
        return multilabel_with_overlap(gold, predictions, no_relation)
    if metric == "semeval":
        g = {ex.id: semeval_label(ex) for ex in examples}
        p = {}
        for ex, pr in zip(examples, predictions):
            rels = as_relation_set(pr, SEMEVAL_OTHER)
            if len(rels) > 1:
                raise ValueError(f"example {ex.id}: SemEval is single-label, got {sorted(rels)}")
            p[ex.id] = next(iter(rels)) if rels else SEMEVAL_OTHER
        return semeval_flat(semeval_official(g, p))
    if metric == "episode_accuracy":
        raise ValueError("episode_accuracy scores episodes: call episode_accuracy() with per-episode results")
    raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
