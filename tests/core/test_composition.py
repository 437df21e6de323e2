"""Every method with every registered part swapped in: it trains, or the
configuration is refused before anything is built.

The matrix is generated from the registry, so a new plugin's parts join it
by being installed. Each cell is ``method=M`` with one section replaced
(``template``, ``loss``, ``decoder``, ``retriever``, ``model``) or the
pretraining replaced by one stage. A cell either

* is refused by ``load_config`` (the compatibility check) with a message that
  names the swapped-in part and the section it clashes with, or
* runs ``train_run`` end to end on tiny random backbones: two optimizer
  steps, dev evaluation, saving, reloading and ranking the test split.

A cell must never fail anywhere else: that is the bug class this test exists
for (an impossible combination that passes validation and dies in training).
"""
from __future__ import annotations

import pytest

from relforge.components import COMPONENT_SECTIONS, ComponentKind
from relforge.config import ConfigError, load_config
from relforge.registry import get_registry

SWAPPED = ("template", "loss", "decoder", "retriever", "model")
TINY = ["data.dataset=quickstart", "data.dataset.train_size=16", "data.dataset.dev_size=4",
        "data.dataset.test_size=4", "train.max_steps=2", "train.batch_size=4", "train.eval_batch_size=8",
        "tracking.trackers=[]"]
#: settings that keep each known stage to a step or two (a third party's stage runs with its defaults)
SMALL_STAGE = {"tkre.mslm": {"max_steps": 1, "batch_size": 4}, "tkre.mslm_scl": {"max_steps": 1, "batch_size": 4},
               "etrag.retriever_warmup": {"steps": 1, "batch_size": 4}}


def cells() -> list[tuple[str, str, str]]:
    reg = get_registry()
    out = []
    for method in sorted(c.full_name for c in reg.components(ComponentKind.METHOD)):
        for section in SWAPPED:
            for c in reg.components(COMPONENT_SECTIONS[section]):
                out.append((method, section, c.full_name))
        for c in reg.components(ComponentKind.PRETRAINING_STAGE):
            out.append((method, "pretraining", c.full_name))
    return out


def overrides(method: str, section: str, name: str) -> list[str]:
    if section == "pretraining":
        small = "".join(f", {k}: {v}" for k, v in SMALL_STAGE.get(name, {}).items())
        return [f"method={method}", f"pretraining=[{{name: {name}{small}}}]"]
    return [f"method={method}", f"{section}={name}"]


def backbones(model: str, tiny_t5: str, tiny_bert: str) -> list[str]:
    if model == "relforge.marker_classifier":
        return [f"model.backbone={tiny_bert}", "model.max_source_length=48"]
    extra = [f"model.backbone={tiny_t5}", "model.max_source_length=64", "model.max_target_length=16"]
    if model == "etrag.rag":
        extra += [f"model.retriever_backbone={tiny_bert}", "model.retriever_max_length=64", "model.k=2",
                  "model.pool_size=8"]
    return extra


@pytest.mark.parametrize("method,section,name", cells(), ids=lambda v: str(v))
def test_every_swap_trains_or_is_refused_up_front(method, section, name, tiny_t5_dir, tiny_bert_dir, tmp_path):
    from relforge.engine.pipeline import train_run

    base = overrides(method, section, name)
    try:
        resolved = load_config([], [*base, *TINY])
    except ConfigError as exc:
        message = str(exc)
        assert name in message, f"the refusal does not name {name}: {message}"
        # refused by the compatibility check (not a schema error), one line per problem
        assert message.startswith("incompatible components:"), message
        return
    model = resolved.components["model"][0]
    resolved = load_config([], [*base, *TINY, *backbones(model, tiny_t5_dir, tiny_bert_dir)])
    outcome = train_run(resolved, output_dir=tmp_path / "run", progress=False)
    assert outcome.model_dir is not None
    assert outcome.test_metrics and 0.0 <= outcome.test_metrics["micro_f1"] <= 1.0


#: the combinations tried by hand in issue 15 (and the ones that should work), with what must happen
KNOWN = [
    (["method=etrag", "loss=cptuning.contrastive_threshold"], None),  # soft prompts + candidate scoring
    (["method=etrag", "retriever=etrag.topk"], None),
    (["method=cptuning", "template=etrag.sure"], None),
    (["method=cptuning", "decoder=relforge.sure"], None),
    (["method=generative_ce", "pretraining=[tkre.generate, tkre.mslm, tkre.mslm_scl]"],
     r"pretraining.1: pretraining_stage tkre.mslm needs a bare encoder .* model relforge.seq2seq does not provide"),
    (["method=etrag", "decoder=relforge.trie-beam"],
     r"decoder relforge.trie-beam does not provide|needs ranking from encoder states"),
    (["method=tkre", "loss=cptuning.contrastive_threshold"],
     r"loss cptuning.contrastive_threshold needs .*token logits .* model relforge.marker_classifier does not"),
    (["method=cptuning", "retriever=etrag.soft_knn"],
     r"retriever: model relforge.seq2seq does not use a retriever.*retriever=null"),
    (["method=etrag", "model.kk=3"], r"model.kk: unknown key; did you mean 'k'\? \(component etrag.rag\)"),
    (["method=marker_classifier", "train.group_learning_rates={retriever: 0.1}"],
     r"model relforge.marker_classifier has no parameter group\(s\) retriever"),
]


@pytest.mark.parametrize("args,refusal", KNOWN, ids=lambda v: str(v))
def test_known_combinations(args, refusal):
    if refusal is None:
        load_config([], args)
    else:
        with pytest.raises(ConfigError, match=refusal):
            load_config([], args)
