"""From a ranking of candidates to a set of predicted relations."""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

from relforge.components import ScoredCandidate
from relforge.config import DecisionSettings as DecisionConfig

__all__ = ["DecisionConfig", "decide", "tune_threshold"]


def decide(ranking: Sequence[ScoredCandidate], no_relation: str | None, cfg: DecisionConfig) -> frozenset[str]:
    """``argmax``: the top candidate. ``threshold``: every candidate whose
    probability (``exp(score)``) reaches ``cfg.threshold`` (``cfg.dev_threshold``
    when one was chosen on dev, see :func:`tune_threshold`); when none does,
    the top one if ``fallback_top1``. The no-relation label is never part of
    the result (an empty set means no relation)."""
    if not ranking:
        return frozenset()
    if cfg.mode == "argmax":
        chosen = [ranking[0].label]
    else:
        log_t = math.log(cfg.dev_threshold if cfg.dev_threshold is not None else cfg.threshold)
        chosen = [c.label for c in ranking if c.score >= log_t]
        if no_relation is not None and len(chosen) > 1:
            chosen = [lab for lab in chosen if lab != no_relation]
        if not chosen and cfg.fallback_top1:
            chosen = [ranking[0].label]
    return frozenset(lab for lab in chosen if lab != no_relation)


def tune_threshold(rankings: Sequence[Sequence[ScoredCandidate]], evaluate: Callable[[list], Mapping[str, float]],
                   metric: str, no_relation: str | None, cfg: DecisionConfig, *, top: int = 5,
                   max_candidates: int = 64) -> tuple[float, float, dict[float, float]]:
    """Choose the decision threshold on dev: (threshold, its metric, every
    tried threshold -> metric).

    ``rankings``: the dev rankings of the selected model; ``evaluate(predictions)``
    scores a list of predicted sets (the data's ``evaluate('dev', ...)``);
    ``metric``: the key to maximise. The tried thresholds are the configured
    one and up to ``max_candidates`` quantiles of the scores of the ``top``
    candidates of every ranking (as probabilities, ``exp(score)``), so each
    tried value changes which candidates pass. Ties go to the threshold
    closest (in log space) to the configured one. The decision keeps
    ``cfg``'s ``fallback_top1``."""
    if cfg.mode != "threshold":
        raise ValueError(f"tuning a threshold needs decision.mode: threshold, not {cfg.mode!r}")
    if not rankings:
        raise ValueError("tuning a threshold needs dev rankings, got none")
    import torch

    pooled = torch.tensor([c.score for r in rankings for c in r[:top]], dtype=torch.float64)
    tried = {float(cfg.threshold)}
    if pooled.numel():
        qs = torch.linspace(0, 1, min(max_candidates, pooled.numel()), dtype=torch.float64)
        tried |= {float(v) for v in torch.quantile(pooled, qs).exp().clamp(max=1.0) if v > 0}
    results: dict[float, float] = {}
    for t in sorted(tried):
        trial = cfg.model_copy(update={"dev_threshold": t})
        scores = evaluate([decide(r, no_relation, trial) for r in rankings])
        if metric not in scores:
            raise KeyError(f"the dev evaluation has no {metric!r} (it has: {', '.join(sorted(scores))})")
        results[t] = float(scores[metric])
    anchor = math.log(cfg.threshold)
    best = max(results, key=lambda t: (results[t], -abs(math.log(t) - anchor)))
    return best, results[best], results
