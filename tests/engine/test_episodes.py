"""Episodic (N-way K-shot) evaluation: prototypes, restricted ranking, and the pipeline."""
from __future__ import annotations

import json

import pytest
import torch

from relforge.components import Embeds
from relforge.config import load_config
from relforge.data.example import Entity, Example
from relforge.data.splits import Episode
from relforge.engine.episodes import episode_mode, predict_episodes
from relforge.engine.pipeline import train_run
from tests.data.conftest import write_jsonl

WORDS = {"likes": ["adores", "loves"], "hates": ["detests", "loathes"], "meets": ["greets", "visits"],
         "owns": ["has", "keeps"], "sells": ["trades", "markets"], "paints": ["draws", "sketches"]}


def ex(i, label, verb=None):
    head, tail = f"Ann{i}", f"Bob{i}"
    text = f"{head} {verb or label} {tail} ."
    return Example(id=f"e{i}", text=text, tokens=text.split(), head=Entity(head, 0, len(head), 0, 1),
                   tail=Entity(tail, text.index(tail), text.index(tail) + len(tail), 2, 3), relations={label})


class FakeEmbedder(Embeds):
    """Vectors chosen by hand: an example's vector is its label's corner, plus its id's jitter."""

    corners = {"a": torch.tensor([0.0, 0.0]), "b": torch.tensor([10.0, 0.0]), "c": torch.tensor([0.0, 10.0])}

    def __init__(self):
        self.calls = []

    def embed(self, examples, batch_size=32):
        self.calls.append([e.id for e in examples])
        return torch.stack([self.corners[e.meta["looks_like"]] + float(e.id[1:]) * 0.01 for e in examples])


def meta_ex(i, label, looks_like):
    e = ex(i, label)
    e.meta["looks_like"] = looks_like
    return e


def test_prototypes_pick_the_nearest_support_mean_and_embed_each_example_once():
    support = [meta_ex(1, "a", "a"), meta_ex(2, "a", "a"), meta_ex(3, "b", "b"), meta_ex(4, "b", "b")]
    # query 5 is gold "a" but looks like "b": a wrong answer, as the geometry says
    query = [meta_ex(5, "a", "a"), meta_ex(6, "b", "b"), meta_ex(7, "a", "b")]
    eps = [Episode(["a", "b"], support, query), Episode(["b", "a"], support, query[:2])]
    model = FakeEmbedder()
    assert episode_mode(model) == "prototypes"
    assert predict_episodes(model, eps) == [["a", "b", "b"], ["a", "b"]]
    assert len(model.calls) == 1 and sorted(model.calls[0]) == [f"e{i}" for i in range(1, 8)]
    with pytest.raises(ValueError, match="no support example for 'c'"):
        predict_episodes(model, [Episode(["a", "c"], support, query)])


def test_a_model_without_embed_is_ranked_over_the_episode_labels():
    class RankOnly:
        def __init__(self):
            self.asked = []

        def rank(self, examples, batch_size=32, labels=None):
            from relforge.components import ScoredCandidate

            self.asked.append(list(labels))
            return [[ScoredCandidate(lab, -i) for i, lab in enumerate(sorted(labels))] for _ in examples]

    model = RankOnly()
    assert episode_mode(model) == "restricted_ranking"
    eps = [Episode(["b", "a"], [ex(1, "a"), ex(2, "b")], [ex(3, "a"), ex(4, "b")])]
    assert predict_episodes(model, eps) == [["a", "a"]] and model.asked == [["b", "a"]]


def test_generative_rank_restricted_to_episode_labels(tiny_t5_dir):
    from relforge.engine.build import build_model
    from relforge.registry import get_registry

    cfg = load_config([], ["method=generative_ce", "data.dataset=quickstart", f"model.backbone={tiny_t5_dir}",
                           "decoder=relforge.exact"])
    words = {"no_relation": "no relation", "born_in": "born in", "lives_in": "lives in", "founded": "founded",
             "works_for": "works for"}
    model = build_model(cfg, labels=list(words), label_words=words, no_relation="no_relation",
                        registry=get_registry())
    assert episode_mode(model) == "restricted_ranking"
    examples = [ex(1, "born_in", "was born in"), ex(2, "founded")]
    rankings = model.rank(examples, labels=["founded", "lives_in"])
    assert all({c.label for c in r} == {"founded", "lives_in"} for r in rankings)
    answers = predict_episodes(model, [Episode(["founded", "lives_in"], [], examples)])
    assert len(answers[0]) == 2 and set(answers[0]) <= {"founded", "lives_in"}
    with pytest.raises(KeyError, match="no verbalized words"):
        model.rank(examples, labels=["sells"])


def test_pipeline_scores_test_episodes_with_a_classifier(tiny_bert_dir, tmp_path):
    rows = []
    for i in range(120):
        label = list(WORDS)[i % 6]
        e = ex(i, label, WORDS[label][i % 2])
        rows.append({"id": e.id, "text": e.text, "head": {"start": e.head.start, "end": e.head.end},
                     "tail": {"start": e.tail.start, "end": e.tail.end}, "relation": label})
    write_jsonl(tmp_path / "d" / "train.jsonl", [r for r in rows if r["relation"] in ("likes", "hates", "meets")])
    write_jsonl(tmp_path / "d" / "test.jsonl", [r for r in rows if r["relation"] not in ("likes", "hates", "meets")])
    cfg = load_config([], [
        "method=marker_classifier", f"model.backbone={tiny_bert_dir}", "train.epochs=1", "train.batch_size=8",
        "tracking.trackers=[]", "data.dev_split=null", "data.dataset=jsonl",
        f"data.dataset.path={tmp_path / 'd'}", "data.dataset.files.train=train.jsonl",
        "data.dataset.files.test=test.jsonl", "data.sampling.kind=episodes", "data.sampling.n=3",
        "data.sampling.k=2", "data.sampling.q=2", "data.sampling.num_episodes=6", "data.sampling.seed=1"])
    out = train_run(cfg, output_dir=tmp_path / "run", progress=False)
    assert out.test_metrics["episodes"] == 6.0 and 0.0 <= out.test_metrics["accuracy"] <= 1.0
    assert "ci95" in out.test_metrics
    lines = [json.loads(x) for x in (tmp_path / "run" / "predictions-test-episodes.jsonl").read_text().splitlines()]
    assert len(lines) == 6 * 3 * 2
    assert all(r["prediction"] in r["labels"] and r["gold"][0] in r["labels"] for r in lines)
    assert {lab for r in lines for lab in r["labels"]} == {"owns", "sells", "paints"}
    # the score is what the written answers give
    acc = sum(r["prediction"] == r["gold"][0] for r in lines) / len(lines)
    assert out.test_metrics["accuracy"] == pytest.approx(acc)
    # issue 21: `relforge evaluate` scores episodes of another file (an out-of-domain set, as FewRel 2.0's),
    # added as a split with --set; the run's episode settings are kept unless --sampling changes them
    from typer.testing import CliRunner

    from relforge.cli import app
    from relforge.data.loading import load_data
    from relforge.engine.extractor import Extractor

    ood = [r for r in rows if r["relation"] in ("likes", "hates", "meets", "owns")]
    ood = [{**r, "text": r["text"].replace("Ann", "Cy"), "head": {"start": 0, "end": r["head"]["end"] - 1},
            "tail": {"start": r["tail"]["start"] - 1, "end": r["tail"]["end"] - 1}} for r in ood]
    write_jsonl(tmp_path / "elsewhere" / "ood.jsonl", ood)
    target = tmp_path / "ood-episodes.jsonl"
    res = CliRunner().invoke(app, ["evaluate", str(tmp_path / "run"), "--set",
                                   f"files.ood={tmp_path / 'elsewhere' / 'ood.jsonl'}", "--split", "ood",
                                   "--sampling", "n=2", "--sampling", "num_episodes=4", "--output", str(target)])
    assert res.exit_code == 0, res.output
    assert "4 episodes, 2-way 2-shot, 2 queries per relation, seed 1 (prototypes)" in res.output
    answers = [json.loads(x) for x in target.read_text().splitlines()]
    assert len(answers) == 4 * 2 * 2 and {lab for r in answers for lab in r["labels"]} <= {
        "likes", "hates", "meets", "owns"}
    # the same episodes and answers as the Python API gives
    extractor = Extractor.from_pretrained(tmp_path / "run")
    data = load_data({**extractor.resolved.run.data.model_dump(), "train_split": None, "dev_split": None,
                      "test_split": "ood", "sampling": {"kind": "episodes", "n": 2, "k": 2, "q": 2,
                                                        "num_episodes": 4, "seed": 1},
                      "dataset": {"name": "relforge.jsonl", "path": str(tmp_path / "d"),
                                  "files": {"ood": str(tmp_path / "elsewhere" / "ood.jsonl")}}})
    direct = predict_episodes(extractor.model, data.episodes["test"])
    assert [r["prediction"] for r in answers] == [p for ep in direct for p in ep]
    accuracy = sum(r["prediction"] == r["gold"][0] for r in answers) / len(answers)
    assert f"{accuracy:.4f}" in res.stdout
    # the run's own settings without --sampling; bad settings are one line each
    res = CliRunner().invoke(app, ["evaluate", str(tmp_path / "run"), "--split", "test"])
    assert res.exit_code == 0 and "6 episodes, 3-way 2-shot" in res.output
    res = CliRunner().invoke(app, ["evaluate", str(tmp_path / "run"), "--sampling", "n=9"])
    assert res.exit_code == 2 and "9-way 2-shot episodes" in res.output and "only 3 have" in res.output
    res = CliRunner().invoke(app, ["evaluate", str(tmp_path / "run"), "--sampling", "way=3"])
    assert res.exit_code == 2 and res.output.strip() == "error: --sampling way: unknown key", res.output
    res = CliRunner().invoke(app, ["evaluate", str(tmp_path / "run"), "--metric", "micro_f1"])
    assert res.exit_code == 2 and "--metric and --unknown-labels do not apply" in res.output
    res = CliRunner().invoke(app, ["evaluate", str(tmp_path / "run"), "--set", "oops"])
    assert res.exit_code == 2 and "--set" in res.output
