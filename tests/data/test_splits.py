"""Splits: deterministic by seed, right sizes, no overlap."""
from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relforge.data.errors import DataError
from relforge.data.example import Entity, Example
from relforge.data.splits import (GENPT_KS, GENPT_SEEDS, carve_dev, exclude_relations, genpt_kshot, genpt_orders, label_key,
                                  ratio_sample, sample_episodes)


def make(n_per_label: dict[str, int], prefix: str = "") -> list[Example]:
    out = []
    e1, e2 = Entity("a", 0, 1, 0, 1), Entity("b", 2, 3, 1, 2)
    for lab, n in n_per_label.items():
        for i in range(n):
            out.append(Example(id=f"{prefix}{lab}-{i}", text="a b", tokens=["a", "b"], head=e1, tail=e2,
                               relations=frozenset() if lab == "NA" else frozenset(lab.split("|"))))
    return out


DATA = make({"r1": 50, "r2": 40, "r3": 10, "NA": 100, "r1|r2": 5})


def ids(xs):
    return [x.id for x in xs]


def test_genpt_protocol_constants():
    assert GENPT_SEEDS == (13, 21, 42, 87, 100) and GENPT_KS == (8, 16, 32)


DEV = make({"r1": 10, "r2": 3, "NA": 20}, prefix="dev-")


def test_genpt_kshot_counts_determinism():
    tr, dv = genpt_kshot(DATA, DEV, 8, 13)
    c_tr, c_dv = Counter(map(label_key, tr)), Counter(map(label_key, dv))
    assert c_tr == {"r1": 8, "r2": 8, "r3": 8, "<no relation>": 8, "r1|r2": 5}
    assert c_dv == {"r1": 8, "r2": 3, "<no relation>": 8}
    assert all(x.id.startswith("dev-") for x in dv) and not any(x.id.startswith("dev-") for x in tr)
    assert (ids(tr), ids(dv)) == tuple(map(ids, genpt_kshot(DATA, DEV, 8, 13)))
    assert ids(genpt_kshot(DATA, DEV, 8, 21)[0]) != ids(tr)
    labels_in_order = list(dict.fromkeys(map(label_key, tr)))
    assert [label_key(x) for x in tr] == sorted(map(label_key, tr), key=labels_in_order.index)  # grouped
    with pytest.raises(DataError):
        genpt_kshot(DATA, DEV, 0, 13)


def test_genpt_seed_chain():
    """GenPT shuffles the same lists once per seed in the order 100, 13, 21, 42, 87."""
    import numpy as np

    tr, dv = list(range(7)), list(range(5))
    for s in (100, 13, 21):
        rng = np.random.RandomState(s)
        rng.shuffle(tr)
        rng.shuffle(dv)
    assert genpt_orders(7, 5, 21) == (tr, dv)
    rng = np.random.RandomState(5)
    one_tr, one_dv = list(range(7)), list(range(5))
    rng.shuffle(one_tr)
    rng.shuffle(one_dv)
    assert genpt_orders(7, 5, 5) == (one_tr, one_dv)


def test_ratio_sample():
    s = ratio_sample(DATA, 0.1, 42)
    assert len(s) == 21  # 10% of 205, rounded half up
    assert ids(s) == ids(ratio_sample(DATA, 0.1, 42)) and ids(s) != ids(ratio_sample(DATA, 0.1, 1))
    assert ids(s) == [x.id for x in DATA if x.id in set(ids(s))]  # file order kept
    strat = Counter(map(label_key, ratio_sample(DATA, 0.1, 42, stratified=True)))
    assert strat == {"r1": 5, "r2": 4, "r3": 1, "<no relation>": 10, "r1|r2": 1}
    assert len(ratio_sample(DATA, 0.001, 1)) == 1
    with pytest.raises(DataError):
        ratio_sample(DATA, 0, 1)


def test_carve_dev_stratified_disjoint_complete():
    tr, dv = carve_dev(DATA, 0.1, 42)
    assert Counter(map(label_key, dv)) == {"r1": 5, "r2": 4, "r3": 1, "<no relation>": 10, "r1|r2": 1}
    assert sorted(ids(tr) + ids(dv)) == sorted(ids(DATA)) and not set(ids(tr)) & set(ids(dv))
    assert ids(dv) == ids(carve_dev(DATA, 0.1, 42)[1])
    one = make({"solo": 1})
    assert carve_dev(one, 0.5, 1) == (one, [])  # a label's only example stays in train


def test_episodes_fewrel_protocol():
    data = make({f"P{i}": 6 for i in range(8)} | {"few": 2})
    eps = sample_episodes(data, n=5, k=2, q=3, num_episodes=20, seed=4)
    assert len(eps) == 20
    for ep in eps:
        assert len(set(ep.labels)) == 5 and "few" not in ep.labels
        assert len(ep.support) == 10 and len(ep.query) == 15
        assert not set(ids(ep.support)) & set(ids(ep.query))
        for j, lab in enumerate(ep.labels):
            assert {next(iter(x.relations)) for x in ep.support[2 * j:2 * j + 2]} == {lab}
    again = sample_episodes(data, n=5, k=2, q=3, num_episodes=20, seed=4)
    assert [ids(e.query) for e in eps] == [ids(e.query) for e in again]
    with pytest.raises(DataError, match="need 10 relations .* only 9"):
        sample_episodes(data, n=10, k=1, q=1, num_episodes=1, seed=0)


def test_exclude_relations():
    kept = exclude_relations(DATA, {"r2"})
    assert all("r2" not in x.relations for x in kept) and len(kept) == 160


@settings(max_examples=30, deadline=None)
@given(st.dictionaries(st.sampled_from(["a", "b", "c", "NA"]), st.integers(1, 30), min_size=1),
       st.integers(1, 10), st.integers(0, 10_000))
def test_kshot_properties(counts, k, seed):
    data, dev = make(counts), make(counts, prefix="dev-")
    tr, dv = genpt_kshot(data, dev, k, seed)
    for lab, n in counts.items():
        key = "<no relation>" if lab == "NA" else lab
        assert Counter(map(label_key, tr))[key] == min(k, n)
        assert Counter(map(label_key, dv))[key] == min(k, n)
    assert len(set(ids(tr))) == len(tr) and len(set(ids(dv))) == len(dv)
