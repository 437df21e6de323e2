"""The retriever-only warm-up: the generator frozen, the retriever encoder
and the projection trained on the generation loss with their own optimizer."""
from __future__ import annotations

from pydantic import Field

from relforge.components import PretrainingStage, Settings


class RetrieverWarmup(PretrainingStage):
    """Retriever-only warm-up: the generator frozen, the retriever encoder and the
    projection trained on the generation loss with their own AdamW."""

    name = "retriever_warmup"

    class Settings(Settings):
        steps: int = Field(100, ge=0)
        batch_size: int = Field(16, gt=0)
        learning_rate: float = Field(1e-4, gt=0)
        max_grad_norm: float | None = Field(1.0, gt=0)

    def run(self, model, tokenizer, examples, context):
        import torch

        s = self.settings
        if not hasattr(model, "retriever_parameters"):
            raise ValueError("etrag.retriever_warmup needs an ETRAG model (method etrag)")
        if model.options.k == 0 or s.steps == 0:
            return model  # nothing to warm up in the SuRE baseline
        params = model.retriever_parameters()
        frozen = [p for p in model.parameters() if p.requires_grad and all(p is not q for q in params)]
        features = model.features(examples, training=True)
        seed = int(context.get("seed", 0)) if context else 0
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.AdamW(params, lr=s.learning_rate)
        for p in frozen:
            p.requires_grad_(False)
        model.train()
        losses = []
        try:
            for _ in range(s.steps):
                idx = torch.randperm(len(features), generator=gen)[: s.batch_size].tolist()
                batch = model.collate([features[i] for i in idx])
                loss = model(batch)["loss"]
                loss.backward()
                if s.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(params, s.max_grad_norm)
                opt.step()
                opt.zero_grad()
                losses.append(float(loss.detach()))
        finally:
            for p in frozen:
                p.requires_grad_(True)
        run = (context or {}).get("run")
        if run is not None and losses:
            run.log_metrics({"warmup/loss_first": losses[0], "warmup/loss_last": losses[-1]}, 0)
        print(f"etrag.retriever_warmup: {s.steps} steps, loss {losses[0]:.4f} -> {losses[-1]:.4f}")
        return model
