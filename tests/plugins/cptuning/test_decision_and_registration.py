"""Multi-label decisions on hand-built score tables; registration; configurations; the subset scores."""
import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from relforge.bench.suite import expand, read_suite
from relforge.cli import app
from relforge.components import ScoredCandidate
from relforge.config import load_config
from relforge.engine.decision import decide
from relforge.registry import get_registry

from relforge_cptuning.evaluation import main as subset_main
from relforge_cptuning.evaluation import subset_scores

REPO = Path(__file__).resolve().parents[3]
PLUGIN = REPO / "plugins" / "relforge_cptuning"
NA = "no_relation"


def table(**probs):
    """A ranking from label -> probability (the score is its log)."""
    ranked = sorted(probs.items(), key=lambda kv: kv[1], reverse=True)
    return [ScoredCandidate(lab, math.log(p), math.log(p), 1) for lab, p in ranked]


def decision(*overrides):
    return load_config([], ["method=cptuning", *overrides]).run.decision


@pytest.mark.parametrize("probs, expected", [
    ({"born_in": 0.9, "lives_in": 0.7, "works_for": 0.2, NA: 0.1}, {"born_in", "lives_in"}),  # two pass
    ({"born_in": 0.9, "lives_in": 0.4, NA: 0.6}, {"born_in"}),     # no-relation passes too: dropped
    ({NA: 0.8, "born_in": 0.3, "lives_in": 0.1}, set()),           # only no-relation passes: none
    ({"born_in": 0.3, "lives_in": 0.2, NA: 0.1}, {"born_in"}),      # none passes: the top one
    ({NA: 0.3, "born_in": 0.2}, set()),                            # none passes, top is no-relation: none
    ({"born_in": 0.5, "lives_in": 0.5 - 1e-6, NA: 0.0001}, {"born_in"}),  # the threshold itself passes
])
def test_threshold_decision_of_the_recipe(probs, expected):
    cfg = decision()
    assert cfg.mode == "threshold" and cfg.threshold == 0.5
    assert decide(table(**probs), NA, cfg) == frozenset(expected)


def test_decision_follows_the_loss_threshold_and_the_ablations():
    probs = {"born_in": 0.9, "lives_in": 0.35, NA: 0.1}
    assert decide(table(**probs), NA, decision("loss.threshold=0.3")) == {"born_in", "lives_in"}
    assert decide(table(**probs), NA, decision("decision.mode=argmax")) == {"born_in"}
    assert decide(table(**{"born_in": 0.3, NA: 0.2}), NA, decision("decision.fallback_top1=false")) == frozenset()


def test_components_are_listed_by_relforge_plugins():
    result = CliRunner().invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    text = result.output
    for name in ("cptuning.infill", "cptuning.contrastive_threshold", "cptuning.free_generation"):
        assert name in text or name.split(".")[1] in text
    reg = get_registry()
    assert reg.get("loss", "cptuning.contrastive_threshold").full_name == "cptuning.contrastive_threshold"
    assert reg.get("template", "cptuning.infill")
    assert reg.get("decoder", "cptuning.free_generation")
    assert reg.method("cptuning").defaults["model"]["name"] == "relforge.seq2seq"


@pytest.mark.parametrize("path", sorted((PLUGIN / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_ablation_configs_resolve(path):
    resolved = load_config([path])
    assert resolved.run.method == "cptuning"


@pytest.mark.parametrize("path", sorted((REPO / "benchmarks" / "suites").glob("*cptuning*.yaml")),
                         ids=lambda p: p.name)
def test_suites_expand_to_valid_cells(path):
    cells = expand(read_suite(path), registry=get_registry())
    assert cells and all(c.error is None for c in cells), [c.error for c in cells if c.error]


def test_subset_scores_by_hand(tmp_path, capsys):
    gold = [["a", "b"], ["a"], [], ["a", "b", "c"]]
    pred = [["a"], ["a"], ["b"], ["a", "b", "c"]]
    s = subset_scores(gold, pred)
    # overall: tp 1+1+0+3 = 5, predicted 6, gold 6
    assert s["precision"] == pytest.approx(5 / 6) and s["recall"] == pytest.approx(5 / 6)
    # pairs with >= 2 relations: rows 0 and 3: tp 4, predicted 4, gold 5
    assert s["multi_pairs"] == 2 and s["multi_precision"] == 1.0 and s["multi_recall"] == pytest.approx(0.8)
    run = tmp_path / "suite" / "cell"
    run.mkdir(parents=True)
    (run / "predictions-test.jsonl").write_text(
        "\n".join(json.dumps({"id": i, "gold": g, "prediction": p}) for i, (g, p) in enumerate(zip(gold, pred))))
    assert subset_main([str(tmp_path / "suite"), "--json", str(tmp_path / "o.json")]) == 0
    rows = json.loads((tmp_path / "o.json").read_text())
    assert rows[0]["run"] == "cell" and rows[0]["multi_recall"] == pytest.approx(0.8)
    with pytest.raises(ValueError):
        subset_scores([["a"]], [])
