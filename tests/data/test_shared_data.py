"""Record counts of the shared public data sets, as their README states them.

Skipped when the shared data folder is absent (set RELFORGE_DATA_DIR).
"""
from __future__ import annotations

from collections import Counter

import pytest

from relforge.data.loading import load_data
from relforge.data.readers import (CoNLL04Dataset, FewRelDataset, NYTDataset, NYTStarDataset, SemEvalDataset,
                                   SemEvalOpenNREDataset, Wiki80Dataset)
from relforge.data.readers.fewrel import FEWREL_VAL_PIDS
from relforge.data.verbalizers import build_verbalizer


def read(ds, split, root):
    examples = ds.read(split, root)
    for ex in examples[:: max(1, len(examples) // 200)]:
        assert ex.check() == []
    return examples, ds.reports[ds.canonical_split(split)]


def test_semeval_original(shared_data_dir):
    ds = SemEvalDataset()
    train, rep = read(ds, "train", shared_data_dir)
    assert len(train) == rep.records == 8000 and rep.total_skipped == 0
    test, _ = read(ds, "test", shared_data_dir)
    assert len(test) == 2717
    labels = Counter(ex.meta["label"] for ex in train + test)
    assert set(labels) == set(ds.labels(shared_data_dir)) and len(labels) == 19
    assert sum(1 for ex in test if not ex.relations) == 454  # 'Other' in the answer key
    # the answer key's relations (undirected in this copy) agree with the directed gold labels
    key = dict(line.split("\t") for line in
               (shared_data_dir / "semeval2010_task8" / "TEST_FILE_KEY.TXT").read_text().splitlines())
    assert all(key[ex.id].split("(")[0] == ex.meta["label"].split("(")[0] for ex in test)
    build_verbalizer(ds, ds.labels(shared_data_dir))


def test_semeval_opennre(shared_data_dir):
    ds = SemEvalOpenNREDataset()
    counts = {s: len(read(ds, s, shared_data_dir)[0]) for s in ("train", "dev", "test")}
    assert counts == {"train": 6507, "dev": 1493, "test": 2717} and counts["train"] + counts["dev"] == 8000


def test_nyt(shared_data_dir):
    ds = NYTDataset()
    assert len(ds.labels(shared_data_dir)) == 24
    test, rep = read(ds, "test", shared_data_dir)
    assert rep.records == 5000
    # 6,775 entity pairs, 1,017 of them with two or more relations; none lost
    assert len(test) + rep.total_skipped == 6775 and rep.total_skipped == 0
    assert sum(1 for ex in test if len(ex.relations) >= 2) == 1017
    assert rep.notes == ["496 repeated triple(s) merged (a pair's relations are a set)"]
    dev, rep = read(ds, "dev", shared_data_dir)
    assert rep.records == 5000
    star, rep = read(NYTStarDataset(), "test", shared_data_dir)
    assert rep.records == 5000 and rep.total_skipped == 0
    build_verbalizer(ds, ds.labels(shared_data_dir))


def test_wiki80(shared_data_dir):
    ds = Wiki80Dataset()
    labels = ds.labels(shared_data_dir)
    assert len(labels) == 80
    for split in ("dev", "test"):
        ex, _ = read(ds, split, shared_data_dir)
        assert len(ex) == 5600 and set(Counter(next(iter(e.relations)) for e in ex).values()) == {70}
    for k in (8, 16, 32):
        for seed in (13, 42):
            for part in ("train", "dev"):
                ex, _ = read(ds, f"{k}-{seed}/{part}", shared_data_dir)
                assert len(ex) == 80 * k
    build_verbalizer(ds, labels)


def test_fewrel_and_leak_free_meta_train(shared_data_dir):
    ds = FewRelDataset()
    val, _ = read(ds, "val_wiki", shared_data_dir)
    assert len(val) == 11200
    assert Counter(next(iter(e.relations)) for e in val) == {pid: 700 for pid in FEWREL_VAL_PIDS}
    names = ds.pid2name(shared_data_dir)
    wiki_labels = set(Wiki80Dataset().labels(shared_data_dir))
    assert all(names[pid] in wiki_labels for pid in FEWREL_VAL_PIDS)  # all 16 occur in Wiki80
    train, rep = read(ds, "train", shared_data_dir)
    rels = {r for e in train for r in e.relations}
    assert len(rels) == 64 and not rels & set(FEWREL_VAL_PIDS) and len(train) == 64 * 140
    v = build_verbalizer(ds, ds.labels(shared_data_dir), data_dir=shared_data_dir)
    assert v["P26"] == "spouse"


def test_conll04(shared_data_dir):
    ds = CoNLL04Dataset()
    assert len(ds.labels(shared_data_dir)) == 5
    for split, n in (("train", 922), ("dev", 231), ("test", 288)):
        _, rep = read(ds, split, shared_data_dir)
        assert rep.records == n and rep.total_skipped == 0


def test_load_data_on_shared_data(shared_data_dir):
    data = load_data({"dataset": "wiki80", "data_dir": str(shared_data_dir),
                      "sampling": {"kind": "kshot", "k": 16, "seed": 42}})
    assert len(data.splits["train"]) == len(data.splits["dev"]) == 1280 and len(data.splits["test"]) == 5600
    data = load_data({"dataset": "fewrel", "data_dir": str(shared_data_dir), "dev_split": None,
                      "test_split": "val_wiki",
                      "sampling": {"kind": "episodes", "n": 5, "k": 1, "q": 1, "num_episodes": 50, "seed": 3}})
    assert all(not set(ep.labels) - set(FEWREL_VAL_PIDS) for ep in data.episodes["test"])
    assert not {r for ex in data.splits["train"] for r in ex.relations} & set(FEWREL_VAL_PIDS)


@pytest.mark.parametrize("seed", [13, 42])
def test_published_wiki80_kshot_is_k_per_relation(shared_data_dir, seed):
    ex, _ = read(Wiki80Dataset(), f"8-{seed}/train", shared_data_dir)
    assert set(Counter(next(iter(e.relations)) for e in ex).values()) == {8}


def test_genpt_kshot_reproduces_the_published_wiki80_dev_splits(shared_data_dir):
    """GenPT sampled Wiki80's K-shot dev sets from dev.json after shuffling its
    44,800-record train.json with the same generator; only train's length
    matters for the dev draw, so the published dev files can be reproduced."""
    from relforge.data.splits import genpt_kshot

    ds = Wiki80Dataset()
    dev, _ = read(ds, "dev", shared_data_dir)
    placeholder_train = dev[:1] * 44800
    for k in (8, 16, 32):
        for seed in (13, 42):
            _, ours = genpt_kshot(placeholder_train, dev, k, seed)
            published, _ = read(ds, f"{k}-{seed}/dev", shared_data_dir)
            assert [(x.tokens, x.relations, x.head, x.tail) for x in ours] == \
                   [(x.tokens, x.relations, x.head, x.tail) for x in published]


def test_cli_stats_on_shared_data(shared_data_dir):
    import json

    from typer.testing import CliRunner

    from relforge.cli import app

    res = CliRunner().invoke(app, ["data", "stats", "nyt", "--data-dir", str(shared_data_dir), "--split", "test",
                                   "--json"])
    assert res.exit_code == 0, res.output
    test = json.loads(res.output)["splits"]["test"]
    assert test["records"] == 5000 and test["examples"] == 6775 and test["multi_relation_pairs"] == 1017
    assert test["sentences"] == 5000 and test["skipped"] == {}
    _, rep = read(NYTStarDataset(), "dev", shared_data_dir)
    assert rep.records == 4999
