"""Small in-process plugins used by the core's tests."""
from __future__ import annotations

import torch
from pydantic import Field

from relforge import hookimpl
from dataclasses import dataclass

from relforge.components import (
    Batch, Dataset, Decoder, Executor, Loss, Method, ModelOutput, ModelParts, ModelSettings, PretrainingStage, REModel,
    RenderedExample, Retrieval, Retriever, ScoredCandidate, Settings, StageContext, StageResult, Template,
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
    requires = {}  # it ranks by text length: any model will do

    def rank(self, model, tokenizer, sources, candidates):
        return [sorted((ScoredCandidate(label, -float(len(text))) for label, text in c.items()),
                       key=lambda s: s.score, reverse=True) for c in candidates]


class DotTopK(Retriever):
    name = "dot_topk"

    def retrieve(self, query, memory, k, exclude=None):
        idx = (query @ memory.T).topk(k, dim=-1).indices
        w = torch.nn.functional.one_hot(idx, memory.shape[0]).float()
        return Retrieval(w, idx, w @ memory)


class SerialExecutor(Executor):
    """Runs a sweep's jobs one after another in this process."""

    name = "serial"
    separate_processes = False

    def run(self, jobs, sweep):
        from relforge.bench.sweep import run_job

        for job in jobs:
            sweep.started(job, None)
            yield run_job(job, registry=sweep.registry, cell=sweep.cells.get(job.cell_id), progress=False)


class ScaledMSE(Loss):
    name = "scaled_mse"

    class Settings(Settings):
        scale: float = Field(1.0, gt=0)
        reduction: str = "mean"

    def __call__(self, outputs: ModelOutput, batch: ToyBatch) -> torch.Tensor:
        return self.settings.scale * torch.nn.functional.mse_loss(outputs.logits, batch.target)


class CountingStage(PretrainingStage):
    """Counts the training examples it was shown (``model.seen``)."""

    name = "counting"

    class Settings(Settings):
        steps: int = 1

    def run(self, model, context: StageContext) -> StageResult:
        model.seen = getattr(model, "seen", 0) + self.settings.steps * len(context.train_examples)
        return StageResult()


@dataclass
class ToyBatch(Batch):
    target: torch.Tensor | None = None


class ToyModel(torch.nn.Module, REModel):
    """A one-weight regression of the text length on the first label's index:
    enough to exercise the model contract without a transformer."""

    name = "linear"
    uses = frozenset({"template", "loss", "decoder", "retriever"})
    needs = frozenset({"template", "loss"})

    def __init__(self, settings, parts: ModelParts) -> None:
        super().__init__()
        self.settings, self.parts = settings, parts
        self.template, self.loss_fn = parts.template, parts.loss
        self.labels, self.label_words, self.no_relation = parts.labels, parts.label_words, parts.no_relation
        self.tokenizer = None
        self.weight = torch.nn.Parameter(torch.zeros(1))

    @classmethod
    def build(cls, settings, parts):
        return cls(settings, parts)

    def features(self, examples, training=True):
        return [{"id": ex.id, "x": float(len(self.template.render(ex, self.label_words).source)),
                 "y": float(self.labels.index(sorted(ex.relations)[0]) if ex.relations else 0),
                 "gold": sorted(ex.relations)} for ex in examples]

    def collate(self, features):
        x = torch.tensor([[f["x"]] for f in features])
        return ToyBatch(input_ids=x, attention_mask=torch.ones_like(x), gold=[f["gold"] for f in features],
                        ids=[f["id"] for f in features], target=torch.tensor([[f["y"]] for f in features]))

    def forward(self, batch):
        out = ModelOutput(logits=self.weight * batch.input_ids)
        out.loss = self.loss_fn(out, batch)
        return out

    def rank(self, examples, batch_size=32, labels=None):
        keep = labels or self.labels
        return [[ScoredCandidate(lab, -abs(float(self.weight.detach()) * f["x"] - i)) for i, lab in enumerate(self.labels)
                 if lab in keep] for f in self.features(examples, training=False)]

    def save(self, folder, meta):
        raise NotImplementedError("the toy model is not saved")


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
    def register_models(self, register):
        register(ToyModel)

    @hookimpl
    def register_executors(self, register):
        register(SerialExecutor)

    @hookimpl
    def register_methods(self, register):
        register(Method(name="toy", description="toy recipe", defaults={
            "data": {"dataset": "toy.tiny"},
            "template": {"name": "echo", "prefix": "> "},
            "decoder": "shortest",
            "loss": {"name": "toy.scaled_mse", "scale": 2.0},
            "retriever": "dot_topk",
            "pretraining": ["counting"],
            "train": {"epochs": 2, "learning_rate": "${options.base_lr}"},
            "options": {"base_lr": 0.001},
            "model": {"name": "toy.linear"},
        }))
