"""Deterministic splits: K-shot (GenPT protocol), ratio samples, carved dev
sets and N-way K-shot episodes (FewRel protocol).

Every function takes the examples in the order the reader produced them (the
file order) and a seed, and uses its own ``random.Random(seed)``: the same
input and seed give the same split on every machine and Python version.
"""
from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from relforge.data.errors import DataError
from relforge.data.example import Example

#: the GenPT / LM-BFF K-shot protocol: these seeds and K values
GENPT_SEEDS = (13, 21, 42, 87, 100)
GENPT_KS = (8, 16, 32)
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


def kshot_split(train: Sequence[Example], k: int, seed: int, *,
                key: Callable[[Example], str] = label_key) -> tuple[list[Example], list[Example]]:
    """GenPT's K-shot protocol: shuffle the training set with ``seed``, then
    take the first ``k`` examples of every label as train and the next ``k``
    as dev (no-relation counts as a label, as in GenPT's TACRED splits).
    A label with fewer than 2k examples gives what it has, train first."""
    if k <= 0:
        raise DataError(f"K-shot needs k >= 1, got {k}")
    order = list(range(len(train)))
    random.Random(seed).shuffle(order)
    taken_train: dict[str, int] = defaultdict(int)
    taken_dev: dict[str, int] = defaultdict(int)
    out_train, out_dev = [], []
    for i in order:
        ex = train[i]
        lab = key(ex)
        if taken_train[lab] < k:
            taken_train[lab] += 1
            out_train.append(ex)
        elif taken_dev[lab] < k:
            taken_dev[lab] += 1
            out_dev.append(ex)
    return out_train, out_dev


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
