"""Metrics on hand-computed cases."""
from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from relforge.data.example import Entity, Example
from relforge.data.export import write_predictions_jsonl, write_semeval_answers
from relforge.data.metrics import episode_accuracy, evaluate, micro_f1, multilabel_prf, semeval_official

CE12, CE21, CW12 = "Cause-Effect(e1,e2)", "Cause-Effect(e2,e1)", "Component-Whole(e1,e2)"
GOLD = {1: CE12, 2: CE21, 3: CW12, 4: "Other", 5: "Other"}
PRED = {1: CE12,      # right
        2: CE12,      # right relation, wrong direction
        3: "Other",   # missed
        4: CW12,      # false positive
        5: "Other"}   # right


def test_tacred_micro_f1_ignores_no_relation():
    gold = ["A", "B", "no_relation", "no_relation", "A"]
    pred = ["A", "no_relation", "B", "no_relation", "B"]
    r = micro_f1(gold, pred, "no_relation")
    assert (r["tp"], r["n_pred"], r["n_gold"]) == (1, 3, 3)
    assert r["precision"] == pytest.approx(1 / 3) and r["recall"] == pytest.approx(1 / 3)
    assert r["micro_f1"] == pytest.approx(1 / 3) and r["accuracy"] == pytest.approx(2 / 5)
    assert micro_f1(["A"], [None])["micro_f1"] == 0.0
    with pytest.raises(ValueError, match="2 gold labels but 1 predictions"):
        micro_f1(["A", "B"], ["A"])


def test_multilabel_prf_over_pair_relation_items():
    gold = [{"a", "b"}, {"c"}, set()]
    pred = [{"a"}, {"c", "d"}, {"e", "NA"}]
    r = multilabel_prf(gold, pred, "NA")
    assert (r["tp"], r["n_pred"], r["n_gold"]) == (2, 4, 3)
    assert r["precision"] == pytest.approx(0.5) and r["recall"] == pytest.approx(2 / 3)
    assert r["micro_f1"] == pytest.approx(4 / 7) and r["exact_match"] == 0.0
    assert multilabel_prf([{"x", "y"}], [["y", "x"]])["micro_f1"] == 1.0


def test_semeval_official_direction_errors():
    r = semeval_official(GOLD, PRED)
    d = r["way10_direction"]
    ce, cw = d["per_relation"]["Cause-Effect"], d["per_relation"]["Component-Whole"]
    # C-E: 1 right of 2 proposed (the wrong-direction one counts as proposed), 2 gold
    assert (ce["tp"], ce["n_pred"], ce["n_gold"], ce["wrong_direction"]) == (1, 2, 2, 1)
    assert ce["precision"] == 0.5 and ce["recall"] == 0.5 and ce["f1"] == 0.5
    assert cw["precision"] == 0.0 and cw["recall"] == 0.0
    assert r["official_macro_f1"] == pytest.approx(0.25) == d["macro_f1"]
    assert d["micro_precision"] == pytest.approx(1 / 3) and d["micro_recall"] == pytest.approx(1 / 3)
    assert d["accuracy"] == pytest.approx(2 / 5) and d["coverage"] == 1.0
    w19 = r["way19"]
    assert w19["per_relation"][CE12]["precision"] == 0.5 and w19["per_relation"][CE12]["recall"] == 1.0
    assert w19["per_relation"][CE21]["f1"] == 0.0
    assert w19["macro_f1"] == pytest.approx((2 / 3) / 3)
    assert w19["macro_precision"] == pytest.approx(0.5 / 3) and w19["macro_recall"] == pytest.approx(1 / 3)
    nd = r["way10_no_direction"]  # ignoring direction, example 2 is right
    assert nd["per_relation"]["Cause-Effect"]["f1"] == 1.0 and nd["macro_f1"] == pytest.approx(0.5)
    assert nd["accuracy"] == pytest.approx(3 / 5)


def test_semeval_skipped_examples():
    pred = {k: v for k, v in PRED.items() if k != 5}
    d = semeval_official(GOLD, pred)["way10_direction"]
    assert d["coverage"] == pytest.approx(4 / 5)
    assert d["accuracy"] == pytest.approx(1 / 4)
    assert d["accuracy_skipped_as_wrong"] == pytest.approx(1 / 5)
    assert d["accuracy_skipped_as_other"] == pytest.approx(2 / 5)
    with pytest.raises(ValueError, match="not a SemEval-2010 Task 8 label"):
        semeval_official(GOLD, {1: "Cause-Effect"})
    with pytest.raises(ValueError, match="ids not in the answer key"):
        semeval_official(GOLD, {9: "Other"})


def test_episode_accuracy_ci():
    r = episode_accuracy([0.5, 1.0, 0.75, 0.75])
    assert r["accuracy"] == pytest.approx(0.75)
    assert r["std"] == pytest.approx((0.125 / 3) ** 0.5)
    assert r["ci95"] == pytest.approx(1.96 * (0.125 / 3) ** 0.5 / 2)
    assert episode_accuracy([(3, 4), (1, 4)])["accuracy"] == pytest.approx(0.5)
    assert episode_accuracy([0.6])["ci95"] == 0.0


def _ex(i, label):
    e = Entity("a", 0, 1, 0, 1)
    return Example(id=str(i), text="a b", tokens=["a", "b"], head=e, tail=Entity("b", 2, 3, 1, 2),
                   relations=frozenset() if label == "Other" else {label}, meta={"label": label, "semeval_id": i})


def test_evaluate_semeval_from_examples_and_answer_key_export(tmp_path):
    examples = [_ex(i, GOLD[i]) for i in sorted(GOLD)]
    preds = [PRED[i] for i in sorted(GOLD)]
    flat = evaluate("semeval", examples, preds)
    assert flat["official_macro_f1"] == pytest.approx(0.25)
    assert flat["way19/macro_f1"] == pytest.approx(2 / 9)
    key = write_semeval_answers(tmp_path / "key.txt", examples)
    prop = write_semeval_answers(tmp_path / "proposed.txt", examples, preds)
    assert key.read_text() == "1\tCause-Effect(e1,e2)\n2\tCause-Effect(e2,e1)\n3\tComponent-Whole(e1,e2)\n" \
                              "4\tOther\n5\tOther\n"
    assert prop.read_text().splitlines()[1] == "2\tCause-Effect(e1,e2)"
    out = write_predictions_jsonl(tmp_path / "p.jsonl", examples, preds, no_relation="Other")
    import json
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[2] == {"id": "3", "head": "a", "tail": "b", "gold": [CW12], "prediction": []}


def test_evaluate_dispatch():
    examples = [_ex(1, "x"), _ex(2, "Other")]
    assert evaluate("micro_f1", examples, ["x", None])["micro_f1"] == 1.0
    assert evaluate("multilabel", examples, [{"x", "y"}, set()])["precision"] == 0.5
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate("bleu", examples, ["x", None])


SCORER = os.environ.get("RELFORGE_SEMEVAL_SCORER")


@pytest.mark.skipif(not (SCORER and Path(SCORER).is_file() and shutil.which("perl")),
                    reason="set RELFORGE_SEMEVAL_SCORER to semeval2010_task8_scorer-v1.2.pl to compare with it")
def test_semeval_matches_the_official_perl_scorer(tmp_path):
    labels = [CE12, CE21, CW12, "Component-Whole(e2,e1)", "Message-Topic(e1,e2)", "Other"]
    rng = random.Random(7)
    gold = {i: rng.choice(labels) for i in range(1, 301)}
    pred = {i: (g if rng.random() < 0.5 else rng.choice(labels)) for i, g in gold.items() if rng.random() < 0.9}
    (tmp_path / "key.txt").write_text("".join(f"{i}\t{v}\n" for i, v in gold.items()))
    (tmp_path / "prop.txt").write_text("".join(f"{i}\t{v}\n" for i, v in pred.items()))
    out = subprocess.run(["perl", SCORER, str(tmp_path / "prop.txt"), str(tmp_path / "key.txt")],
                         capture_output=True, text=True, check=True).stdout
    macro = [tuple(map(float, m)) for m in re.findall(
        r"MACRO-averaged result \(excluding Other\):\nP =\s*([\d.]+)%\s*R =\s*([\d.]+)%\s*F1 =\s*([\d.]+)%", out)]
    r = semeval_official(gold, pred)
    mine = [tuple(round(100 * r[b][k], 2) for k in ("macro_precision", "macro_recall", "macro_f1"))
            for b in ("way19", "way10_no_direction", "way10_direction")]
    assert mine == macro


def test_multilabel_adds_scores_on_pairs_with_two_or_more_relations():
    from relforge.data.example import Entity, Example

    def ex(i, rels):
        return Example(id=str(i), text="a b", tokens=["a", "b"], head=Entity("a", 0, 1, 0, 1),
                       tail=Entity("b", 2, 3, 1, 2), relations=frozenset(rels))

    examples = [ex(1, {"x", "y"}), ex(2, {"x"}), ex(3, set()), ex(4, {"y", "z"})]
    preds = [{"x"}, {"x"}, {"y"}, {"y", "z"}]
    out = evaluate("multilabel", examples, preds, "NA")
    # overall: 4 of 5 gold found, 4 of 5 predictions right
    assert out["micro_f1"] == pytest.approx(0.8) and out["tp"] == 4
    # pairs 1 and 4 only: gold {x,y},{y,z}; predicted {x},{y,z}: P 3/3, R 3/4
    assert out["multi_pairs"] == 2.0
    assert out["multi_precision"] == 1.0 and out["multi_recall"] == pytest.approx(0.75)
    assert out["multi_exact_match"] == 0.5


def test_data_export_writes_the_official_answer_formats_from_a_prediction_file(tmp_path):
    """issue 21: `relforge data export` turns a split's prediction file into the scorers' inputs."""
    import json

    from typer.testing import CliRunner

    from relforge.cli import app

    examples = [_ex(i, GOLD[i]) for i in sorted(GOLD)]
    preds = [PRED[i] for i in sorted(GOLD)]
    rows = write_predictions_jsonl(tmp_path / "run" / "predictions-test.jsonl", examples, preds, no_relation="Other")
    res = CliRunner().invoke(app, ["data", "export", str(tmp_path / "run"), "--format", "semeval",
                                   "-o", str(tmp_path / "proposed.txt"), "--key", str(tmp_path / "key.txt")])
    assert res.exit_code == 0, res.output
    assert "5 answers written" in res.output
    # the same files as the answer-key writer gives from the examples themselves
    assert (tmp_path / "proposed.txt").read_bytes() == write_semeval_answers(
        tmp_path / "ref-proposed.txt", examples, preds).read_bytes()
    assert (tmp_path / "key.txt").read_bytes() == write_semeval_answers(tmp_path / "ref-key.txt", examples).read_bytes()
    # TACRED's scorer: one label a line, no_relation for none
    res = CliRunner().invoke(app, ["data", "export", str(rows), "--format", "tacred", "-o", str(tmp_path / "t.txt"),
                                   "--key", str(tmp_path / "tk.txt")])
    assert res.exit_code == 0
    assert (tmp_path / "t.txt").read_text().splitlines()[2] == "no_relation"
    assert (tmp_path / "tk.txt").read_text().splitlines()[2] == CW12
    # ids that are not sentence numbers are numbered by row, and that is said
    odd = tmp_path / "odd.jsonl"
    odd.write_text("".join(json.dumps({**json.loads(line), "id": f"test-{n}"}) + "\n"
                           for n, line in enumerate(rows.read_text().splitlines())))
    res = CliRunner().invoke(app, ["data", "export", str(odd), "-o", str(tmp_path / "o.txt")])
    assert res.exit_code == 0 and "numbered by row" in res.output
    assert (tmp_path / "o.txt").read_text().splitlines()[0].startswith("1\t")
    # refused, one line each: several relations, an unknown format, a missing file, a bad line
    multi = tmp_path / "multi.jsonl"
    multi.write_text(json.dumps({"id": "1", "gold": [CW12], "prediction": [CW12, "Other", "Cause-Effect(e1,e2)"]})
                     + "\n")
    res = CliRunner().invoke(app, ["data", "export", str(multi), "-o", str(tmp_path / "m.txt")])
    assert res.exit_code == 2 and "row 1: 2 predicted relations" in res.output and not (tmp_path / "m.txt").exists()
    res = CliRunner().invoke(app, ["data", "export", str(rows), "--format", "conll"])
    assert res.exit_code == 2 and "use one of semeval, tacred" in res.output
    res = CliRunner().invoke(app, ["data", "export", str(tmp_path / "nowhere")])
    assert res.exit_code == 2 and "no such file" in res.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "gold": [], "prediction": []}\n{oops\n')
    res = CliRunner().invoke(app, ["data", "export", str(bad), "-o", str(tmp_path / "b.txt")])
    assert res.exit_code == 2 and f"{bad}:2: not valid JSON" in res.output
