"""The retriever-only warm-up: the generator frozen, the retriever encoder
and the projection trained on the generation loss, in the engine's training
loop (:func:`relforge.engine.stage_training.train_stage`: Accelerate, mixed
precision on a GPU, a resumable checkpoint in the stage's folder)."""
from __future__ import annotations

from pydantic import Field

from relforge.components import (
    Ability, HasRetriever, PretrainingStage, REModel, Settings, StageContext, StageResult,
)
from relforge.engine.stage_training import epochs_for_steps, superseded, train_stage


class RetrieverWarmup(PretrainingStage):
    """Retriever-only warm-up: the generator frozen, the retriever encoder and the
    projection trained on the generation loss (AdamW, constant learning rate,
    batches drawn epoch by epoch in a seeded order)."""

    name = "retriever_warmup"
    requires = {"model": frozenset({Ability.RETRIEVAL})}

    class Settings(Settings):
        steps: int = Field(100, ge=0)
        batch_size: int = Field(16, gt=0)
        learning_rate: float = Field(1e-4, gt=0)
        max_grad_norm: float | None = Field(1.0, gt=0)

    def run(self, model: REModel, context: StageContext) -> StageResult:
        s = self.settings
        if not isinstance(model, HasRetriever):
            raise ValueError(f"etrag.retriever_warmup needs a model with a retriever (etrag.rag), "
                             f"not {type(model).name!r}")
        params = model.retriever_parameters()
        if not params or s.steps == 0:
            print("etrag.retriever_warmup: nothing to warm up (the model does not retrieve: k = 0, or steps = 0)")
            return StageResult()
        if superseded(context, "warmup"):
            return StageResult()
        frozen = [p for p in model.parameters() if p.requires_grad and all(p is not q for q in params)]
        features = model.features(context.train_examples, training=True)
        for p in frozen:  # the engine's loop trains what requires a gradient: the retriever and projection
            p.requires_grad_(False)
        try:
            _, trainer = train_stage(model, features, model.collate, context=context, name="warmup", settings={
                "max_steps": s.steps, "epochs": epochs_for_steps(s.steps, len(features), s.batch_size),
                "batch_size": s.batch_size, "learning_rate": s.learning_rate, "max_grad_norm": s.max_grad_norm,
                # torch's AdamW default, which the warm-up's own optimizer used before it ran in the engine's loop
                "weight_decay": 0.01, "log_every": max(1, min(10, s.steps)), "group_learning_rates": {}})
        finally:
            for p in frozen:
                p.requires_grad_(True)
        losses = trainer.step_losses if trainer is not None else []
        if context.run is not None and losses:
            context.run.log_metrics({"warmup/loss_first": losses[0], "warmup/loss_last": losses[-1]}, 0)
        if losses:
            print(f"etrag.retriever_warmup: {len(losses)} steps, loss {losses[0]:.4f} -> {losses[-1]:.4f}")
        return StageResult()
