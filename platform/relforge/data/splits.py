"""Deterministic splits: K-shot (GenPT protocol), ratio samples, carved dev
sets and N-way K-shot episodes (FewRel protocol).

Every function takes the examples in the order the reader produced them (the
file order) and a seed, and uses its own generator (``random.Random(seed)``;
numpy's legacy generator for the GenPT protocol, to reproduce its files): the
same input and seed give the same split on every machine.
"""
from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from relforge.data.errors import DataError
from relforge.data.example import Example

#: the GenPT K-shot protocol: these seeds and K values
GENPT_SEEDS = (13, 21, 42, 87, 100)
GENPT_KS = (8, 16, 32)
#: the order in which GenPT's generator applies the seeds (it matters: see genpt_orders)
GENPT_SEED_ORDER = (100, 13, 21, 42, 87)
#: low-resource ratio splits of the training set
RATIOS = (0.01, 0.05, 0.10)

NO_RELATION_KEY = "<no relation>"


def label_key(ex: Example) -> str:
    """The stratum of an example: its relation, its relations joined by '|'
    (multi-label), or ``<no relation>``."""
    return "|".join(sorted(ex.relations)) if ex.relations else NO_RELATION_KEY


def _by_label(examples: Iterable[Example], key: Callable[[Example], str]) -> dict[str, list[Example]]:
    groups: dict[str, list[Example]] = defaultdict(list)
    for ex in examples:
        groups[key(ex)].append(ex)
    return dict(sorted(groups.items()))


def _first_k_per_label(items: Sequence[Example], order: Sequence[int], k: int,
                       key: Callable[[Example], str]) -> list[Example]:
    """The first ``k`` examples of every label in ``order``, grouped by label
    in order of each label's first appearance (GenPT's output layout)."""
    groups: dict[str, list[Example]] = {}
    for i in order:
        ex = items[i]
        groups.setdefault(key(ex), []).append(ex)
    return [ex for group in groups.values() for ex in group[:k]]


def genpt_orders(n_train: int, n_dev: int, seed: int) -> tuple[list[int], list[int]]:
    """The record orders GenPT's ``generate_k_shot_data.py`` leaves the train
    and dev lists in for ``seed``.

    The script seeds numpy's legacy generator with each seed of
    :data:`GENPT_SEED_ORDER` in turn and shuffles the *same* lists in place
    each time (train first, then dev), so the order for seed 42 is the result
    of the shuffles for 100, 13, 21 and 42. A seed outside that list gets one
    shuffle of its own.
    """
    import numpy as np

    chain = GENPT_SEED_ORDER[:GENPT_SEED_ORDER.index(seed) + 1] if seed in GENPT_SEED_ORDER else (seed,)
    train_order, dev_order = list(range(n_train)), list(range(n_dev))
    for s in chain:
        rng = np.random.RandomState(s)
        rng.shuffle(train_order)
        rng.shuffle(dev_order)
    return train_order, dev_order


def genpt_kshot(train: Sequence[Example], dev: Sequence[Example], k: int, seed: int, *,
                key: Callable[[Example], str] = label_key) -> tuple[list[Example], list[Example]]:
    """GenPT's K-shot protocol: K examples of every label (no-relation
    included) from the shuffled train split, and K of every label from the
    shuffled dev split. Reproduces GenPT's published files record for record
    (checked against its Wiki80 dev splits) when given the same train and dev
    files in file order."""
    if k <= 0:
        raise DataError(f"K-shot needs k >= 1, got {k}")
    train_order, dev_order = genpt_orders(len(train), len(dev), seed)
    return _first_k_per_label(train, train_order, k, key), _first_k_per_label(dev, dev_order, k, key)


def ratio_sample(train: Sequence[Example], ratio: float, seed: int, *, stratified: bool = False,
                 key: Callable[[Example], str] = label_key) -> list[Example]:
    """A seeded sample of ``ratio`` of the training set (at least one
    example; per label, rounding half up, when ``stratified``), in file order."""
    if not 0 < ratio <= 1:
        raise DataError(f"ratio must be in (0, 1], got {ratio}")
    rng = random.Random(seed)
    if stratified:
        chosen: set[int] = set()
        index = {id(ex): i for i, ex in enumerate(train)}
        for _, group in _by_label(train, key).items():
            n = max(1, int(len(group) * ratio + 0.5))
            chosen |= {index[id(ex)] for ex in rng.sample(group, n)}
    else:
        n = max(1, int(len(train) * ratio + 0.5))
        chosen = set(rng.sample(range(len(train)), n))
    return [train[i] for i in sorted(chosen)]


def carve_dev(train: Sequence[Example], ratio: float = 0.1, seed: int = 42, *,
              key: Callable[[Example], str] = label_key) -> tuple[list[Example], list[Example]]:
    """Split a dev set off the training set where a data set has none:
    ``ratio`` of every label (stratified, seeded); returns (train, dev), both
    in file order and disjoint."""
    if not 0 < ratio < 1:
        raise DataError(f"dev_ratio must be in (0, 1), got {ratio}")
    rng = random.Random(seed)
    index = {id(ex): i for i, ex in enumerate(train)}
    dev_idx: set[int] = set()
    for _, group in _by_label(train, key).items():
        n = int(len(group) * ratio + 0.5)
        if n >= len(group):
            n = len(group) - 1
        dev_idx |= {index[id(ex)] for ex in rng.sample(group, n)}
    return ([ex for i, ex in enumerate(train) if i not in dev_idx],
            [ex for i, ex in enumerate(train) if i in dev_idx])


@dataclass
class Episode:
    """One N-way K-shot episode: ``labels`` (N), ``support`` (N*K examples,
    label by label) and ``query`` (N*Q examples, label by label). The gold
    answer of a query example is its (single) relation."""

    labels: list[str]
    support: list[Example]
    query: list[Example]
    seed: int = 0
    meta: dict = field(default_factory=dict)


def sample_episodes(examples: Sequence[Example], n: int, k: int, q: int, num_episodes: int, seed: int) \
        -> list[Episode]:
    """FewRel-protocol episodes: each draws ``n`` relations uniformly among
    those with at least k+q examples, then k support and q query examples of
    each, without replacement inside the episode."""
    groups = {lab: g for lab, g in _by_label(examples, label_key).items() if lab != NO_RELATION_KEY}
    if any("|" in lab for lab in groups):
        raise DataError("episodes need single-relation examples")
    eligible = sorted(lab for lab, g in groups.items() if len(g) >= k + q)
    if len(eligible) < n:
        raise DataError(f"{n}-way {k}-shot episodes with {q} queries per relation need {n} relations with at "
                        f"least {k + q} examples each; only {len(eligible)} have that many")
    rng = random.Random(seed)
    out = []
    for e in range(num_episodes):
        labels = rng.sample(eligible, n)
        support, query = [], []
        for lab in labels:
            picked = rng.sample(groups[lab], k + q)
            support += picked[:k]
            query += picked[k:]
        out.append(Episode(labels=labels, support=support, query=query, seed=seed, meta={"index": e}))
    return out


def exclude_relations(examples: Iterable[Example], excluded: Iterable[str]) -> list[Example]:
    """The examples none of whose relations is in ``excluded`` (a leak-free
    meta-training set: Wiki80 without the FewRel validation relations)."""
    excluded = set(excluded)
    return [ex for ex in examples if not (ex.relations & excluded)]
