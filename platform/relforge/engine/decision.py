"""From a ranking of candidates to a set of predicted relations."""
from __future__ import annotations

import math
from collections.abc import Sequence

from relforge.components import ScoredCandidate
from relforge.config import DecisionSettings as DecisionConfig

__all__ = ["DecisionConfig", "decide"]


def decide(ranking: Sequence[ScoredCandidate], no_relation: str | None, cfg: DecisionConfig) -> frozenset[str]:
    """``argmax``: the top candidate. ``threshold``: every candidate whose
    probability (``exp(score)``) reaches ``cfg.threshold``; when none does,
    the top one if ``fallback_top1``. The no-relation label is never part of
    the result (an empty set means no relation)."""
    if not ranking:
        return frozenset()
    if cfg.mode == "argmax":
        chosen = [ranking[0].label]
    else:
        log_t = math.log(cfg.threshold)
        chosen = [c.label for c in ranking if c.score >= log_t]
        if no_relation is not None and len(chosen) > 1:
            chosen = [lab for lab in chosen if lab != no_relation]
        if not chosen and cfg.fallback_top1:
            chosen = [ranking[0].label]
    return frozenset(lab for lab in chosen if lab != no_relation)
