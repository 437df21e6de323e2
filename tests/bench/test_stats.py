"""Paired comparisons: count forms equal the core metrics, and the tests find
what they should on hand-computed cases."""
from __future__ import annotations

import random

import numpy as np
import pytest

from relforge.data.example import Entity, Example
from relforge.data.metrics import evaluate, micro_f1, multilabel_prf
from relforge.stats import (accuracy_metric, compare_arms, micro_f1_metric, paired_permutation_test,
                            semeval_official_metric)


def test_count_forms_equal_the_core_metrics():
    rng = random.Random(0)
    labels = ["a", "b", "c"]
    gold = [rng.sample(labels, rng.randint(0, 2)) for _ in range(300)]
    pred = [rng.sample(labels, rng.randint(0, 2)) for _ in range(300)]
    expected = multilabel_prf([frozenset(g) for g in gold], [frozenset(p) for p in pred])["micro_f1"]
    assert micro_f1_metric().score(gold, pred) == pytest.approx(expected, abs=1e-12)
    single_g = [[rng.choice(labels)] if rng.random() < 0.7 else [] for _ in range(300)]
    single_p = [[rng.choice(labels)] if rng.random() < 0.7 else [] for _ in range(300)]
    expected = micro_f1([frozenset(g) for g in single_g], [frozenset(p) for p in single_p])["micro_f1"]
    assert micro_f1_metric().score(single_g, single_p) == pytest.approx(expected, abs=1e-12)


def test_semeval_count_form_equals_the_official_scorer():
    rng = random.Random(1)
    rels = ["Cause-Effect", "Component-Whole", "Entity-Origin", "Message-Topic"]
    labels = [f"{r}({d})" for r in rels for d in ("e1,e2", "e2,e1")] + ["Other"]
    examples, preds, gold = [], [], []
    for i in range(400):
        g = rng.choice(labels)
        # mostly right, some wrong direction, some other relation
        p = g if rng.random() < 0.6 else rng.choice(labels)
        ex = Example(str(i + 1), "A b .", ["A", "b", "."], Entity("A", 0, 1, 0, 1), Entity("b", 2, 3, 1, 2),
                     frozenset() if g == "Other" else frozenset({g}))
        ex.meta["label"] = g
        examples.append(ex)
        preds.append(frozenset() if p == "Other" else frozenset({p}))
        gold.append([] if g == "Other" else [g])
    official = evaluate("semeval", examples, preds)["official_macro_f1"]
    mine = semeval_official_metric().score(gold, [sorted(p) for p in preds])
    assert mine == pytest.approx(official, abs=1e-12)


def test_exact_permutation_p_value_by_hand():
    # 4 examples, A right on all, B wrong on all: of the 2^4 swaps only "none" and "all" reach |delta| = 1
    metric = accuracy_metric()
    gold = [["x"]] * 4
    a = metric.matrix(gold, [["x"]] * 4)[None]
    b = metric.matrix(gold, [["y"]] * 4)[None]
    assert paired_permutation_test(a, b, metric, n_resamples=10_000) == pytest.approx(2 / 16)


def test_identical_arms_give_p_one_and_a_zero_interval():
    rng = random.Random(2)
    gold = [[rng.choice("abc")] for _ in range(200)]
    pred = [[rng.choice("abc")] for _ in range(200)]
    r = compare_arms(gold, {13: pred, 42: pred}, {13: pred, 42: pred}, micro_f1_metric(), n_resamples=2000)
    assert r.delta == 0.0 and r.p_value == pytest.approx(1.0)
    assert r.ci_low == r.ci_high == 0.0 and r.seeds == 2 and r.examples == 200


def test_a_real_difference_is_found_and_its_interval_covers_it():
    rng = np.random.default_rng(3)
    n = 300
    gold = [["r"]] * n
    arm_a = {s: [["r"] if rng.random() < 0.85 else [] for _ in range(n)] for s in (13, 42, 87)}
    arm_b = {s: [["r"] if rng.random() < 0.55 else [] for _ in range(n)] for s in (13, 42, 87)}
    metric = accuracy_metric()
    r = compare_arms(gold, arm_a, arm_b, metric, n_resamples=2000, seed=7)
    truth = np.mean([metric.score(gold, arm_a[s]) - metric.score(gold, arm_b[s]) for s in (13, 42, 87)])
    assert r.delta == pytest.approx(truth) and r.p_value < 0.001
    assert 0 < r.ci_low < r.delta < r.ci_high
    assert r.seed_ci_low is not None and r.seed_ci_low < r.delta < r.seed_ci_high
    # seeded: the same answer again; B against A mirrors it
    again = compare_arms(gold, arm_a, arm_b, metric, n_resamples=2000, seed=7)
    assert (again.p_value, again.ci_low, again.ci_high) == (r.p_value, r.ci_low, r.ci_high)
    back = compare_arms(gold, arm_b, arm_a, metric, n_resamples=2000, seed=7)
    assert back.delta == pytest.approx(-r.delta) and back.p_value == pytest.approx(r.p_value, abs=0.01)


def test_arms_that_share_no_seed_or_examples_are_refused():
    metric = micro_f1_metric()
    with pytest.raises(ValueError, match="share no seed"):
        compare_arms([["a"]], {1: [["a"]]}, {2: [["a"]]}, metric)
    with pytest.raises(ValueError, match="predictions"):
        compare_arms([["a"], ["b"]], {1: [["a"]]}, {1: [["a"], ["b"]]}, metric)


def _plant(root, spec, accuracy_by_method, n=120):
    """result.json and predictions-test.jsonl for every cell of ``spec``, the
    predictions right with the method's probability (seeded per cell)."""
    import json

    from relforge.bench.runner import cell_dir
    from relforge.bench.suite import expand

    for cell in expand(spec):
        rng = np.random.default_rng(int(cell.coordinates["seed"]) + len(cell.coordinates["method"]))
        acc = accuracy_by_method[cell.coordinates["method"]]
        folder = cell_dir(root / spec.name, cell)
        folder.mkdir(parents=True)
        rows = [{"id": f"t{i}", "gold": ["likes"], "prediction": ["likes"] if rng.random() < acc else []}
                for i in range(n)]
        (folder / "predictions-test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        f1 = micro_f1_metric().score([r["gold"] for r in rows], [r["prediction"] for r in rows])
        (folder / "result.json").write_text(json.dumps({"config_hash": cell.config_hash,
                                                        "metrics": {"test/micro_f1": f1, "dev/tuned_threshold": 0.9}}))


def test_suite_report_has_the_comparison_table_and_bolds_only_a_significant_lead(tmp_path):
    from relforge.bench.runner import report_suite
    from relforge.bench.suite import SuiteFile

    spec = SuiteFile(name="cmp", base={"data": {"dataset": "quickstart"}, "tracking": {"trackers": []}},
                     matrix={"method": ["generative_ce", "marker_classifier"], "seed": [13, 42, 87]},
                     metrics=["test/micro_f1", "dev/tuned_threshold"],
                     compare={"baseline": {"method": "generative_ce"}, "resamples": 2000})
    _plant(tmp_path, spec, {"generative_ce": 0.5, "marker_classifier": 0.9})
    paths = report_suite(spec, output_dir=tmp_path)
    text = (tmp_path / "cmp" / "report" / "report.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| method=marker_classifier | method="))
    cells = [c.strip() for c in row.split("|")]
    assert cells[3] == "test/micro_f1" and float(cells[6].split()[0]) > 0.2 and cells[6].endswith("*")
    assert cells[10] == "3" and cells[11] == "120" and float(cells[9]) < 0.01
    # the significant lead is bold; the tuned threshold (not a score) is never bold
    assert "**0." in text.split("## dev/tuned_threshold")[0]
    assert "**" not in text.split("## dev/tuned_threshold")[1].split("## Paired")[0]
    assert any(p.name == "forest.png" for p in paths)
    import pandas as pd

    table = pd.read_csv(tmp_path / "cmp" / "report" / "comparisons.csv")
    f1 = table[table.metric == "test/micro_f1"].iloc[0]
    assert (f1.arm, f1.baseline, f1.seeds, f1.test_examples) == ("method=marker_classifier", "method=generative_ce",
                                                                 3, 120)
    assert f1.ci_low < f1.delta < f1.ci_high and f1.p < 0.01 and f1.differs_in == "method"


def test_a_single_seed_says_so_and_a_tie_is_not_bold(tmp_path):
    from relforge.bench.runner import report_suite
    from relforge.bench.suite import SuiteFile

    spec = SuiteFile(name="one", base={"data": {"dataset": "quickstart"}, "tracking": {"trackers": []}},
                     matrix={"method": ["generative_ce", "marker_classifier"], "seed": [13]},
                     compare={"resamples": 500})
    _plant(tmp_path, spec, {"generative_ce": 0.7, "marker_classifier": 0.72})
    report_suite(spec, output_dir=tmp_path)
    text = (tmp_path / "one" / "report" / "report.md").read_text()
    assert "(1 seed)" in text and "±" not in text.split("## Paired")[0].split("## test/micro_f1")[1]
    assert "**" not in text.split("## Paired")[0]  # a 2-point lead on 120 examples is not significant
    assert "n/a (1 seed)" in text


def test_compare_cli_pairs_run_folders_by_seed(tmp_path):
    import json

    from typer.testing import CliRunner

    from relforge.cli import app

    rng = np.random.default_rng(0)
    folders = {}
    for arm, acc in (("a", 0.9), ("b", 0.4)):
        for seed in (13, 42):
            f = tmp_path / f"{arm}{seed}"
            f.mkdir()
            (f / "config.yaml").write_text(f"seed: {seed}\n")
            rows = [{"id": f"t{i}", "gold": ["r"], "prediction": ["r"] if rng.random() < acc else []}
                    for i in range(80)]
            (f / "predictions-test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            folders[(arm, seed)] = f
    res = CliRunner().invoke(app, ["compare", str(folders[("a", 13)]), str(folders[("a", 42)]),
                                   "-b", str(folders[("b", 42)]), "-b", str(folders[("b", 13)]),
                                   "--resamples", "500"])
    assert res.exit_code == 0, res.output
    row = next(line for line in res.output.splitlines() if "test/micro_f1" in line)
    assert "*" in row and "| 2 | 80 |" in row
    res = CliRunner().invoke(app, ["compare", str(folders[("a", 13)]), "-b", str(tmp_path)])
    assert res.exit_code == 2 and "no test predictions" in res.output
