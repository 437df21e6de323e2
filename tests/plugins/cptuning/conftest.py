import pytest

from relforge.config import load_config
from relforge.data.loading import load_data
from relforge.registry import get_registry

SMALL = ["data.dataset.train_size=24", "data.dataset.dev_size=8", "data.dataset.test_size=8",
         "train.batch_size=8", "train.eval_batch_size=16", "model.max_source_length=48",
         "model.max_target_length=16", "tracking.trackers=[]"]


def cptuning_config(backbone, *extra):
    return load_config([], ["method=cptuning", "data.dataset=quickstart", f"model.backbone={backbone}", *SMALL,
                            *extra])


def build(resolved):
    from relforge.engine.build import build_model

    registry = get_registry()
    data = load_data(resolved.run.data, registry)
    words = {lab: data.verbalizer.words[lab] for lab in data.labels}
    model = build_model(resolved, labels=data.labels, label_words=words, no_relation=data.no_relation,
                        registry=registry)
    return model, data


@pytest.fixture
def tiny_cptuning(tiny_t5_dir):
    return build(cptuning_config(tiny_t5_dir))
