"""The retriever-only warm-up: the generator frozen, the retriever encoder
and the projection trained on the generation loss with their own optimizer."""
from __future__ import annotations

from pydantic import Field

from relforge.components import (
    Ability, HasRetriever, PretrainingStage, REModel, Settings, StageContext, StageResult,
)


class RetrieverWarmup(PretrainingStage):
    """Retriever-only warm-up: the generator frozen, the retriever encoder and the
    projection trained on the generation loss with their own AdamW."""

    name = "retriever_warmup"
    requires = {"model": frozenset({Ability.RETRIEVAL})}

    class Settings(Settings):
        steps: int = Field(100, ge=0)
        batch_size: int = Field(16, gt=0)
        learning_rate: float = Field(1e-4, gt=0)
        max_grad_norm: float | None = Field(1.0, gt=0)

    def run(self, model: REModel, context: StageContext) -> StageResult:
        import torch

        s = self.settings
        if not isinstance(model, HasRetriever):
            raise ValueError(f"etrag.retriever_warmup needs a model with a retriever (etrag.rag), "
                             f"not {type(model).name!r}")
        params = model.retriever_parameters()
        if not params or s.steps == 0:
            print("etrag.retriever_warmup: nothing to warm up (the model does not retrieve: k = 0, or steps = 0)")
            return StageResult()
        frozen = [p for p in model.parameters() if p.requires_grad and all(p is not q for q in params)]
        features = model.features(context.train_examples, training=True)
        gen = torch.Generator().manual_seed(context.seed)
        opt = torch.optim.AdamW(params, lr=s.learning_rate)
        for p in frozen:
            p.requires_grad_(False)
        model.train()
        losses = []
        try:
            for _ in range(s.steps):
                idx = torch.randperm(len(features), generator=gen)[: s.batch_size].tolist()
                batch = model.collate([features[i] for i in idx])
                loss = model(batch).loss
                loss.backward()
                if s.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(params, s.max_grad_norm)
                opt.step()
                opt.zero_grad()
                losses.append(float(loss.detach()))
        finally:
            for p in frozen:
                p.requires_grad_(True)
        if context.run is not None and losses:
            context.run.log_metrics({"warmup/loss_first": losses[0], "warmup/loss_last": losses[-1]}, 0)
        print(f"etrag.retriever_warmup: {s.steps} steps, loss {losses[0]:.4f} -> {losses[-1]:.4f}")
        return StageResult()
