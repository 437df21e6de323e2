"""Paired comparisons of two arms scored on the same test examples.

Corpus metrics (micro-F1, SemEval's official macro-F1, accuracy) are not
means over examples, but each is a function of *summed per-example counts*:
micro-F1 of (true positives, predictions, gold relations), the SemEval
macro-F1 of the same three per relation. :class:`CountMetric` turns each
example's (gold, prediction) into a count vector, so a resample of examples
is a weighted sum, and the tests below run vectorised over 10,000 resamples.

* :func:`paired_permutation_test`: approximate randomisation (Noreen 1989;
  Riezler and Maxwell 2005; recommended for F1-type metrics by Dror et al.,
  2018): under the null the two systems' outputs on an example are
  exchangeable, so each example's pair is swapped with probability 1/2
  (``scipy.stats.permutation_test``, ``permutation_type="samples"``). With
  several seeds per arm the arms are paired seed by seed (seed s of A with
  seed s of B, both scored on the same examples), every (seed, example) pair
  is one exchangeable unit, and the statistic is the mean over seeds of the
  per-seed metric difference -- the pooled test over seeds.
* :func:`paired_bootstrap_ci`: a 95% percentile interval for that mean
  difference, resampling the test examples (the same examples for both arms
  and every seed; ``scipy.stats.bootstrap`` with ``paired=True``). It covers
  the test-set sampling; :func:`seed_interval` is the t-interval over the
  per-seed differences, which covers the training randomness (wide with 3
  seeds, as it should be).

Both resamplings are seeded, so a report is reproducible.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Labels = Sequence[str]


@dataclass
class CountMetric:
    """A metric as ``value(sum of per-example count vectors)``.

    ``counts(gold, prediction)`` -> a 1-D float vector for one example (gold
    and prediction are label lists, empty for no relation); ``value(sums)``
    -> the metric from the summed vectors, vectorised over leading axes
    (``sums``: (..., C))."""

    name: str
    counts: Callable[[Labels, Labels], np.ndarray]
    value: Callable[[np.ndarray], np.ndarray]
    #: +1: larger is better; -1: smaller is better
    direction: int = 1

    def matrix(self, gold: Sequence[Labels], predictions: Sequence[Labels]) -> np.ndarray:
        if len(gold) != len(predictions):
            raise ValueError(f"{len(gold)} gold rows but {len(predictions)} predictions")
        return np.stack([self.counts(g, p) for g, p in zip(gold, predictions)]) if gold else np.zeros((0, 1))

    def score(self, gold: Sequence[Labels], predictions: Sequence[Labels]) -> float:
        return float(self.value(self.matrix(gold, predictions).sum(0)))


def _f1(tp: np.ndarray, n_pred: np.ndarray, n_gold: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(n_pred > 0, tp / np.maximum(n_pred, 1e-12), 0.0)
        r = np.where(n_gold > 0, tp / np.maximum(n_gold, 1e-12), 0.0)
        return np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0.0)


def micro_f1_metric() -> CountMetric:
    """Micro-F1 over relation labels (no relation = an empty list): the
    core's ``micro_f1`` for single-label data and its ``multilabel`` micro-F1
    (every relation of a pair counts) for sets."""
    def counts(gold: Labels, pred: Labels) -> np.ndarray:
        g, p = set(gold), set(pred)
        return np.array([len(g & p), len(p), len(g)], dtype=float)

    return CountMetric("micro_f1", counts, lambda s: _f1(s[..., 0], s[..., 1], s[..., 2]))


def accuracy_metric() -> CountMetric:
    """Exact-set accuracy (episode accuracy over queries; exact match)."""
    return CountMetric("accuracy", lambda g, p: np.array([float(set(g) == set(p)), 1.0]),
                       lambda s: s[..., 0] / np.maximum(s[..., 1], 1e-12))


_SEMEVAL_RELATIONS = ("Cause-Effect", "Component-Whole", "Content-Container", "Entity-Destination",
                      "Entity-Origin", "Instrument-Agency", "Member-Collection", "Message-Topic",
                      "Product-Producer")
_DIRECTION = re.compile(r"\(e[12],e[12]\)$")


def semeval_official_metric() -> CountMetric:
    """SemEval-2010 Task 8's official score (macro-F1 over the 9 relations,
    directions required; a right relation in the wrong direction counts as a
    wrong prediction of that relation) from per-example counts: per relation
    (true positives, predictions incl. wrong direction, gold). It equals the
    scorer's figure except where a relation is only ever predicted in the
    wrong direction (the scorer then gives precision 0; here too, since its
    true positives are 0)."""
    index = {r: i for i, r in enumerate(_SEMEVAL_RELATIONS)}

    def one(labels: Labels) -> str:
        return labels[0] if labels else "Other"

    def counts(gold: Labels, pred: Labels) -> np.ndarray:
        out = np.zeros((len(_SEMEVAL_RELATIONS), 3))
        g, p = one(gold), one(pred)
        gr, pr = _DIRECTION.sub("", g), _DIRECTION.sub("", p)
        if gr in index:
            out[index[gr], 2] += 1
        if pr in index:
            out[index[pr], 1] += 1
            if p == g:
                out[index[pr], 0] += 1
        return out.reshape(-1)

    def value(s: np.ndarray) -> np.ndarray:
        s = s.reshape(*s.shape[:-1], len(_SEMEVAL_RELATIONS), 3)
        present = s[..., 2] > 0  # the scorer averages over the relations in the answer key
        return (_f1(s[..., 0], s[..., 1], s[..., 2]) * present).sum(-1) / np.maximum(present.sum(-1), 1)

    return CountMetric("official_macro_f1", counts, value)


#: metric name (as a run logs it, without ``test/``) -> its count form
COUNT_METRICS: dict[str, Callable[[], CountMetric]] = {
    "micro_f1": micro_f1_metric, "official_macro_f1": semeval_official_metric, "accuracy": accuracy_metric,
    "exact_match": accuracy_metric,
}


def count_metric(name: str) -> CountMetric:
    """The count form of a metric named as a run logs it (``micro_f1`` or
    ``test/micro_f1``); sub-figures such as ``test/way10_direction/micro_f1``
    are other metrics and have none."""
    key = name.removeprefix("test/")
    if key not in COUNT_METRICS:
        raise ValueError(f"no per-example form of metric {name!r} for paired tests; known: "
                         f"{', '.join(sorted(COUNT_METRICS))}")
    metric = COUNT_METRICS[key]()
    metric.name = key
    return metric


# --- the tests ----------------------------------------------------------------------

def _stack(arms: Sequence[np.ndarray]) -> np.ndarray:
    """(S, n, C) from S per-seed (n, C) count matrices, checking n and C."""
    shapes = {a.shape for a in arms}
    if len(shapes) != 1:
        raise ValueError(f"the seeds' count matrices differ in shape {sorted(shapes)}: the runs were not scored "
                         f"on the same test examples")
    return np.stack(arms)


def _mean_difference(a: np.ndarray, b: np.ndarray, metric: CountMetric) -> np.ndarray:
    """Mean over seeds of metric(A_s) - metric(B_s); a, b: (..., S, n, C)."""
    return (metric.value(a.sum(-2)) - metric.value(b.sum(-2))).mean(-1)


@dataclass
class PairedResult:
    metric: str
    mean_a: float
    mean_b: float
    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    seeds: int
    examples: int
    seed_ci_low: float | None = None
    seed_ci_high: float | None = None
    per_seed_delta: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def paired_permutation_test(a: np.ndarray, b: np.ndarray, metric: CountMetric, *, n_resamples: int = 10_000,
                            seed: int = 0) -> float:
    """Two-sided p-value of approximate randomisation; a, b: (S, n, C) counts
    of the two arms (seed s of A paired with seed s of B)."""
    from scipy.stats import permutation_test

    s, n, c = a.shape
    index = np.arange(s * n)
    sum_a, sum_b = a.sum(1), b.sum(1)  # (S, C)
    diff = b - a  # (S, n, C): what swapping a unit moves from A's sums to B's

    def statistic(ia: np.ndarray, ib: np.ndarray, axis: int = -1) -> np.ndarray:
        # ia: unit indices into [A units; B units], (..., S*n); pairs keep their position, so a unit is
        # swapped exactly when its index points into B. Per-seed sums move by the swapped units' differences.
        swapped = (ia >= s * n).astype(float).reshape(*ia.shape[:-1], s, n)
        moved = np.einsum("...sn,snc->...sc", swapped, diff)
        return (metric.value(sum_a + moved) - metric.value(sum_b - moved)).mean(-1)

    res = permutation_test((index, index + s * n), statistic, permutation_type="samples", vectorized=True,
                           n_resamples=n_resamples, alternative="two-sided", random_state=seed, batch=1000)
    return float(res.pvalue)


def paired_bootstrap_ci(a: np.ndarray, b: np.ndarray, metric: CountMetric, *, n_resamples: int = 10_000,
                        seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the mean difference, resampling test examples
    (the same resample for both arms and every seed)."""
    from scipy.stats import bootstrap

    s, n, c = a.shape
    if n < 2:
        d = float(_mean_difference(a, b, metric))
        return d, d

    flat_a, flat_b = a.transpose(1, 0, 2).reshape(n, s * c), b.transpose(1, 0, 2).reshape(n, s * c)

    def statistic(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        # a resample is a count of how often each example was drawn: sums are weighted sums
        single = idx.ndim == 1
        idx = np.atleast_2d(idx.astype(int))
        weights = np.zeros((idx.shape[0], n))
        np.add.at(weights, (np.arange(idx.shape[0])[:, None], idx), 1.0)
        sa = (weights @ flat_a).reshape(-1, s, c)
        sb = (weights @ flat_b).reshape(-1, s, c)
        out = (metric.value(sa) - metric.value(sb)).mean(-1)
        return out[0] if single else out

    res = bootstrap((np.arange(n),), statistic, vectorized=True, n_resamples=n_resamples, method="percentile",
                    confidence_level=level, random_state=seed, batch=1000)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def seed_interval(deltas: Sequence[float], level: float = 0.95) -> tuple[float | None, float | None]:
    """t-interval of the mean per-seed difference (None with one seed)."""
    if len(deltas) < 2:
        return None, None
    from scipy.stats import t

    d = np.asarray(deltas, dtype=float)
    half = t.ppf(0.5 + level / 2, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return float(d.mean() - half), float(d.mean() + half)


def compare_arms(gold: Sequence[Labels], arm_a: Mapping[Any, Sequence[Labels]], arm_b: Mapping[Any, Sequence[Labels]],
                 metric: CountMetric, *, n_resamples: int = 10_000, seed: int = 0) -> PairedResult:
    """Arm A against arm B on the same test examples (``gold``). ``arm_a`` /
    ``arm_b``: seed -> predictions aligned with ``gold``; seeds present in
    both arms are paired, the others ignored (an arm with no common seed is
    an error)."""
    common = sorted(set(arm_a) & set(arm_b), key=str)
    if not common:
        raise ValueError(f"the arms share no seed (A: {sorted(arm_a, key=str)}, B: {sorted(arm_b, key=str)}): "
                         f"they cannot be paired")
    a = _stack([metric.matrix(gold, arm_a[s]) for s in common])
    b = _stack([metric.matrix(gold, arm_b[s]) for s in common])
    per_a = metric.value(a.sum(1))
    per_b = metric.value(b.sum(1))
    deltas = [float(x) for x in per_a - per_b]
    low, high = paired_bootstrap_ci(a, b, metric, n_resamples=n_resamples, seed=seed)
    p = paired_permutation_test(a, b, metric, n_resamples=n_resamples, seed=seed)
    slow, shigh = seed_interval(deltas)
    return PairedResult(metric.name, float(per_a.mean()), float(per_b.mean()), float(np.mean(deltas)), low, high,
                        p, len(common), len(gold), slow, shigh, deltas)
