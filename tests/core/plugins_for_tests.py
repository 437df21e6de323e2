"""Small in-process plugins used by the core's tests."""
from __future__ import annotations

import torch
from pydantic import Field

from relforge import hookimpl
from relforge.components import (
    Dataset, Decoder, Loss, Method, PretrainingStage, RenderedExample, Retrieval, Retriever,
    ScoredCandidate, Settings, Template,
)
from relforge.data.example import Entity, Example


class EchoTemplate(Template):
    """Source is the text; targets are the label words."""

    name = "echo"

    class Settings(Settings):
        prefix: str = ""

    def render(self, example, label_words):
        targets = [label_words[r] for r in sorted(example.relations)]
        return RenderedExample(self.settings.prefix + example.text, targets, dict(label_words))


class LengthDecoder(Decoder):
    """Ranks candidates by (negative) length of their target text."""

    name = "shortest"

    def rank(self, model, tokenizer, sources, candidates):
        return [sorted((ScoredCandidate(label, -float(len(text))) for label, text in c.items()),
                       key=lambda s: s.score, reverse=True) for c in candidates]


class DotTopK(Retriever):
    name = "dot_topk"

    def retrieve(self, query, memory, k, exclude=None):
        idx = (query @ memory.T).topk(k, dim=-1).indices
        w = torch.nn.functional.one_hot(idx, memory.shape[0]).float()
        return Retrieval(w, idx, w @ memory)


class ScaledMSE(Loss):
    name = "scaled_mse"

    class Settings(Settings):
        scale: float = Field(1.0, gt=0)
        reduction: str = "mean"

    def __call__(self, outputs, batch):
        return self.settings.scale * torch.nn.functional.mse_loss(outputs["pred"], batch["target"])


class CountingStage(PretrainingStage):
    name = "counting"

    class Settings(Settings):
        steps: int = 1

    def run(self, model, tokenizer, examples, context):
        model["seen"] = model.get("seen", 0) + self.settings.steps * len(examples)
        return model


class TinyDataset(Dataset):
    name = "tiny"
    no_relation = "NA"

    def splits(self):
        return ["train"]

    def read(self, split, data_dir=None):
        text = "Ann visited Rome ."
        return [Example("t1", text, text.split(), Entity("Ann", 0, 3, 0, 1, "PER"),
                        Entity("Rome", 12, 16, 2, 3, "LOC"), frozenset({"visited"}))]

    def labels(self, data_dir=None):
        return ["NA", "visited"]


class ToyPlugin:
    """Offers one component of each kind."""

    @hookimpl
    def register_templates(self, register):
        register(EchoTemplate)

    @hookimpl
    def register_decoders(self, register):
        register(LengthDecoder)

    @hookimpl
    def register_retrievers(self, register):
        register(DotTopK)

    @hookimpl
    def register_losses(self, register):
        register(ScaledMSE, aliases=["mse"])

    @hookimpl
    def register_pretraining_stages(self, register):
        register(CountingStage)

    @hookimpl
    def register_datasets(self, register):
        register(TinyDataset)

    @hookimpl
    def register_methods(self, register):
        register(Method(name="toy", description="toy recipe", defaults={
            "data": {"dataset": "toy.tiny"},
            "template": {"name": "echo", "prefix": "> "},
            "decoder": "shortest",
            "loss": {"name": "toy.scaled_mse", "scale": 2.0},
            "retriever": "dot_topk",
            "pretraining": ["counting"],
            "train": {"epochs": 2, "learning_rate": "${model.options.base_lr}"},
            "model": {"options": {"base_lr": 0.001}},
        }))
