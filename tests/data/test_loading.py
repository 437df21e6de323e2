"""load_data: the engine's entry point (splits + sampling + labels + verbalizer + metric), and the CLI."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from relforge.cli import app
from relforge.config import DataConfig
from relforge.data.errors import DataError
from relforge.validation import ConfigError
from relforge.data.loading import parse_sampling, load_data, load_splits
from relforge.data.verbalizers import VerbalizerError
from tests.data.conftest import write, write_json, write_jsonl


def jsonl_rows(n: int, labels=("likes", "hates", "none")):
    rows = []
    for i in range(n):
        lab = labels[i % len(labels)]
        rows.append({"id": f"r{i}", "text": f"Ann{i} meets Bob{i} .", "head": {"start": 0, "end": 3 + len(str(i))},
                     "tail": {"start": 10 + len(str(i)), "end": 13 + 2 * len(str(i))}, "relation": lab})
    return rows


@pytest.fixture
def jsonl_dir(tmp_path):
    root = tmp_path / "mine"
    write_jsonl(root / "train.jsonl", jsonl_rows(60))
    write_jsonl(root / "test.jsonl", jsonl_rows(9))
    return root


def cfg(root, **kw):
    return DataConfig.model_validate({"dataset": {"name": "jsonl", "path": str(root), "no_relation": "none",
                                                  "files": {"train": "train.jsonl", "test": "test.jsonl"}}, **kw})


def test_load_data_returns_splits_label_space_verbalizer_metric(jsonl_dir):
    data = load_data(cfg(jsonl_dir))  # `files` names train and test only: dev is carved from train
    assert [len(data.splits[r]) for r in ("train", "dev", "test")] == [54, 6, 9]
    assert not {x.id for x in data.splits["train"]} & {x.id for x in data.splits["dev"]}
    assert data.labels == ["none", "hates", "likes"] and data.no_relation == "none"
    assert data.verbalizer["hates"] == "hates" and data.metric == "micro_f1"
    assert data.reports["train"].records == 60 and data.reports["test"].records == 9
    gold = [next(iter(ex.relations)) if ex.relations else "none" for ex in data.splits["test"]]
    assert data.evaluate("test", gold)["micro_f1"] == 1.0
    assert load_splits(cfg(jsonl_dir)).keys() == {"train", "dev", "test"}


def test_load_data_missing_dev_file_is_an_error_not_a_carve(jsonl_dir):
    c = DataConfig.model_validate({"dataset": {"name": "jsonl", "path": str(jsonl_dir), "no_relation": "none",
                                               "files": {}}})
    with pytest.raises(FileNotFoundError, match="dev.jsonl"):
        load_data(c)
    write_jsonl(jsonl_dir / "dev.jsonl", jsonl_rows(6))
    data = load_data(c)
    assert [len(data.splits[r]) for r in ("train", "dev", "test")] == [60, 6, 9]
    assert data.evaluate("dev", [None] * 6)["micro_f1"] == 0.0


def test_carve_dev_for_semeval_layout(tmp_path):
    block = '{i}\t"The <e1>kettle{i}</e1> made <e2>steam</e2>."\n{lab}\nComment:\n\n'
    labs = ["Cause-Effect(e1,e2)", "Other"]
    write(tmp_path / "semeval2010_task8" / "TRAIN_FILE.TXT",
          "".join(block.format(i=i, lab=labs[i % 2]) for i in range(1, 41)), crlf=True)
    write(tmp_path / "semeval2010_task8" / "TEST_FILE_FULL.TXT",
          "".join(block.format(i=i, lab=labs[i % 2]) for i in range(41, 45)), crlf=True)
    c = DataConfig.model_validate({"dataset": "semeval", "data_dir": str(tmp_path), "sampling": {"dev_ratio": 0.25}})
    data = load_data(c)
    assert [len(data.splits[r]) for r in ("train", "dev", "test")] == [30, 10, 4]
    assert "dev carved from 'train'" in data.notes[0] and data.metric == "semeval"
    again = load_splits(c)
    assert [x.id for x in again["dev"]] == [x.id for x in data.splits["dev"]]
    assert data.evaluate("test", [ex.meta["label"] for ex in data.splits["test"]])["official_macro_f1"] == 1.0


def test_kshot_ratio_and_episodes(jsonl_dir):
    c = cfg(jsonl_dir, sampling={"kind": "kshot", "k": 4, "seed": 13, "dev_ratio": 0.5})
    data = load_data(c)  # no dev file: half of train carved off as dev, then K per label from each
    assert len(data.splits["train"]) == 12 and len(data.splits["dev"]) == 12
    assert not {x.id for x in data.splits["train"]} & {x.id for x in data.splits["dev"]}
    assert "carved" in data.notes[0] and "GenPT" in data.notes[1]
    assert [x.id for x in load_data(c).splits["train"]] == [x.id for x in data.splits["train"]]
    assert "dev" not in load_data(cfg(jsonl_dir, dev_split=None, sampling={"kind": "kshot", "k": 4,
                                                                            "seed": 13})).splits
    data = load_data(cfg(jsonl_dir, dev_split=None, sampling={"kind": "ratio", "ratio": 0.1, "seed": 5}))
    assert len(data.splits["train"]) == 6
    data = load_data(cfg(jsonl_dir, dev_split=None,
                         sampling={"kind": "episodes", "n": 2, "k": 1, "q": 2, "num_episodes": 7, "seed": 1}))
    assert data.metric == "episode_accuracy" and len(data.episodes["test"]) == 7
    gold = [[next(iter(ex.relations)) for ex in ep.query] for ep in data.episodes["test"]]
    perfect = data.evaluate_episodes("test", gold)
    assert perfect["accuracy"] == 1.0 and perfect["ci95"] == 0.0 and perfect["episodes"] == 7
    half = [g[:2] + ["wrong"] * 2 for g in gold]
    assert data.evaluate_episodes("test", half)["accuracy"] == pytest.approx(0.5)
    assert len(data.train_episodes(3, seed=2)[0].query) == 4


def test_published_kshot_files_are_used(tmp_path):
    rec = {"token": ["Ax", "by", "Cy"], "relation": "spouse", "subj_start": 0, "subj_end": 0, "obj_start": 2,
           "obj_end": 2}
    write_json(tmp_path / "wiki80" / "rel2id.json", {"spouse": 0})
    write_json(tmp_path / "wiki80" / "test.json", [rec])
    write_json(tmp_path / "wiki80" / "k-shot" / "8-13" / "train.json", [rec] * 8)
    write_json(tmp_path / "wiki80" / "k-shot" / "8-13" / "dev.json", [rec] * 8)
    data = load_data({"dataset": "wiki80", "data_dir": str(tmp_path), "sampling": {"kind": "kshot", "k": 8,
                                                                                     "seed": 13}})
    assert len(data.splits["train"]) == 8 and "published" in data.notes[0]
    with pytest.raises(FileNotFoundError, match=r"wiki80/train.json"):
        load_data({"dataset": "wiki80", "data_dir": str(tmp_path), "sampling": {"kind": "kshot", "k": 8, "seed": 21}})


def test_sampling_and_verbalizer_errors(jsonl_dir, tmp_path):
    # refused when the data config is validated (a ValidationError), before any data is read
    with pytest.raises(ValueError, match=r"data.sampling.kk: unknown key"):
        load_data(cfg(jsonl_dir, sampling={"kind": "kshot", "k": 2, "seed": 1, "kk": 3}))
    with pytest.raises(ValueError, match=r"data.sampling"):
        load_data(cfg(jsonl_dir, sampling={"kind": "bootstrap"}))
    with pytest.raises(ConfigError, match=r"data.sampling.kk: unknown key"):
        parse_sampling({"kind": "kshot", "k": 2, "seed": 1, "kk": 3})
    with pytest.raises(DataError, match="data.dataset is not set"):
        load_data(DataConfig())
    f = write(tmp_path / "v.yaml", "labels:\n  likes: hates\n")
    with pytest.raises(VerbalizerError, match="clash"):
        load_data(cfg(jsonl_dir, dev_split=None, verbalizer=str(f)))


def test_cli_stats(jsonl_dir, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["data", "stats", "jsonl", "--set", f"path={jsonl_dir}", "--set", "no_relation=none",
                              "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["splits"]["train"]["examples"] == 60 and out["splits"]["train"]["no_relation"] == 20
    assert out["splits"]["train"]["labels"] == {"likes": 20, "hates": 20, "none": 20}
    assert "dev" in out["missing"] and out["splits"]["test"]["length_tokens"]["p50"] == 4
    res = runner.invoke(app, ["data", "stats", "jsonl", "--set", f"path={jsonl_dir}", "--split", "train",
                              "--set", "files={train: train.jsonl}"])
    assert res.exit_code == 0 and "likes" in res.output and "train" in res.output
    res = runner.invoke(app, ["data", "stats", "semeval", "--data-dir", str(tmp_path)])
    assert res.exit_code == 2 and "TRAIN_FILE.TXT" in res.output
    res = runner.invoke(app, ["data", "stats", "no_such_set", "--data-dir", str(tmp_path)])
    assert res.exit_code == 2 and "unknown dataset" in res.output


def test_dev_size_caps_dev_with_a_seeded_stratified_sample(jsonl_dir):
    write_jsonl(jsonl_dir / "dev.jsonl", jsonl_rows(30))
    files = {"train": "train.jsonl", "dev": "dev.jsonl", "test": "test.jsonl"}

    def load(**sampling):
        return load_data(DataConfig.model_validate({"dataset": {"name": "jsonl", "path": str(jsonl_dir),
                                                                "no_relation": "none", "files": files},
                                                    "sampling": sampling}))

    full = load()
    assert len(full.splits["dev"]) == 30
    data = load(kind="ratio", ratio=0.5, seed=3, dev_size=9)
    dev = data.splits["dev"]
    assert len(dev) == 9 and {x.id for x in dev} <= {x.id for x in full.splits["dev"]}
    # stratified: three of each of the three labels
    labels = [sorted(x.relations)[0] if x.relations else "none" for x in dev]
    assert {lab: labels.count(lab) for lab in set(labels)} == {"likes": 3, "hates": 3, "none": 3}
    assert any("dev_size 9" in n for n in data.notes)
    assert [x.id for x in load(kind="ratio", ratio=0.5, seed=3, dev_size=9).splits["dev"]] == [x.id for x in dev]
    assert len(data.splits["test"]) == 9 and len(data.splits["train"]) == 30  # test and train untouched
    assert len(load(dev_size=100).splits["dev"]) == 30  # larger than dev: no-op
    with pytest.raises(ConfigError, match="dev_size"):
        parse_sampling({"dev_size": 0})


def test_test_size_scores_a_seeded_uniform_sample_and_says_so(jsonl_dir):
    write_jsonl(jsonl_dir / "test.jsonl", jsonl_rows(40))
    full = load_data(cfg(jsonl_dir)).splits["test"]
    data = load_data(cfg(jsonl_dir, sampling={"test_size": 10, "test_seed": 4}))
    test = data.splits["test"]
    assert len(test) == 10 and {x.id for x in test} <= {x.id for x in full}
    assert any("not the whole split" in n for n in data.notes)
    again = load_data(cfg(jsonl_dir, sampling={"test_size": 10, "test_seed": 4})).splits["test"]
    other = load_data(cfg(jsonl_dir, sampling={"test_size": 10, "test_seed": 5})).splits["test"]
    assert [x.id for x in again] == [x.id for x in test] != [x.id for x in other]
    assert len(data.splits["train"]) == 54  # train and dev untouched


def test_multi_relation_pairs_choose_the_multilabel_metric_and_test_only_labels_are_named(jsonl_dir):
    rows = jsonl_rows(9, labels=("likes", "hates", "sues"))
    write_jsonl(jsonl_dir / "test.jsonl", rows)
    data = load_data(cfg(jsonl_dir))
    assert data.metric == "micro_f1"
    assert any("test has label(s) with no training example: sues" in n for n in data.notes)
    train = jsonl_rows(60)
    train[0] = {**train[0], "relations": ["likes", "hates"]}
    train[0].pop("relation")
    write_jsonl(jsonl_dir / "train.jsonl", train)
    data = load_data(cfg(jsonl_dir))
    assert data.metric == "multilabel" and any(n.startswith("metric: multilabel") for n in data.notes)
