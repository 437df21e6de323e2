"""The two pretraining stages, run on the engine's typed-marker classifier before fine-tuning.

``tkre.mslm`` (stage 1) and ``tkre.mslm_scl`` (stage 2) update
``model.encoder`` in place, so the pretrained encoder is the one the
pipeline fine-tunes next (no checkpoint hand-over to forget). The MLM head
(and, in stage 2, the relation anchors) exist only during the stage. Both
train in the engine's loop (:func:`relforge.engine.stage_training.train_stage`:
Accelerate and mixed precision on a GPU, a resumable checkpoint per stage,
the progress display); their losses are logged as
``pretraining/<stage>/loss`` and ``pretraining/<stage>/<part>``.
"""
from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field

from relforge.components import (
    Ability, HasEncoder, HasParameterGroups, ModelOutput, PretrainingStage, REModel, ReportsDiagnostics, Settings,
    StageContext, StageResult,
)
from relforge.engine.stage_training import superseded, train_stage
from relforge.data.example import Example

from .knowledge import _find
from .objectives import (BETWEEN, ENTITY, SPECIAL, PretrainText, mean_pool, mslm_loss, mslm_mask, span_infonce,
                         token_roles)

KNOWLEDGE_DIR = "tkre-knowledge"
Source = Literal["sentences", "explanations", "synthetic"]


def knowledge_dir(context: StageContext) -> Path:
    """Where the generation stage writes and the pretraining stages read: a
    folder of the run (``context.run_dir``), shared by the stages."""
    return Path(context.run_dir) / KNOWLEDGE_DIR


def read_explanations(context: StageContext) -> list[dict[str, Any]]:
    path = knowledge_dir(context) / "explanations.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def record_knowledge_use(context: StageContext, stage: str, counts: Mapping[str, int]) -> None:
    """Log how many texts of each source the stage used, as metrics and (with
    MLflow) as a tag, so a run without generated knowledge says so."""
    run = context.run
    generated = counts.get("explanations", 0) + counts.get("synthetic", 0)
    summary = ("none (pretrained on the task's own sentences only)" if not generated else
               f"explanations={counts.get('explanations', 0)},synthetic={counts.get('synthetic', 0)}")
    folder = knowledge_dir(context)
    folder.mkdir(parents=True, exist_ok=True)
    usage_path = folder / "usage.json"
    usage = json.loads(usage_path.read_text()) if usage_path.exists() else {}
    usage[stage] = {**counts, "generated_knowledge": summary}
    usage_path.write_text(json.dumps(usage, indent=2), encoding="utf-8")
    print(f"{stage}: generated knowledge used: {summary}")
    if run is None:
        return
    run.log_metrics({f"tkre/{stage}/{k}": v for k, v in counts.items()}, 0)
    set_run_tag(run, f"tkre.{stage}.generated_knowledge", summary)


def set_run_tag(run: Any, key: str, value: str) -> None:
    """A tag on the run, in every tracker (the core's ``Run.set_tags``)."""
    try:
        run.set_tags({key: value})
    except Exception as exc:  # tracking must not break training
        print(f"tkre: could not set tag {key}: {exc}")


def build_corpus(examples: Sequence[Example], context: StageContext, sources: Sequence[str],
                 no_relation: str | None) -> tuple[list[PretrainText], dict[str, int]]:
    corpus: list[PretrainText] = []
    counts = {"sentences": 0, "explanations": 0, "synthetic": 0}
    for ex in examples:
        source = "synthetic" if ex.meta.get("tkre_synthetic") else "sentences"
        if source not in sources:
            continue
        rel = sorted(ex.relations)[0] if ex.relations else None
        if rel == no_relation:
            rel = None
        corpus.append(PretrainText(ex.text, (ex.head.start, ex.head.end), (ex.tail.start, ex.tail.end), rel, source))
        counts[source] += 1
    if "explanations" in sources:
        for rec in read_explanations(context):
            text = rec["explanation"]
            head = _find(text, rec["head"])
            tail = _find(text, rec["tail"], avoid=head) if head is not None else _find(text, rec["tail"])
            corpus.append(PretrainText(text, head, tail, rec.get("relation"), "explanations"))
            counts["explanations"] += 1
    return corpus, counts


# --- the MLM head -------------------------------------------------------------

def build_mlm_head(model: Any, context: StageContext) -> tuple[torch.nn.Module, str]:
    """A masked-LM model whose base is ``model.encoder`` (shared, not copied)
    and whose output projection is tied to the encoder's input embeddings.
    The head's transform is loaded from the backbone checkpoint when it has
    one (BERT/RoBERTa releases do), otherwise initialised randomly."""
    from transformers import AutoModelForMaskedLM

    encoder = model.encoder
    origin = "initialised randomly (the backbone checkpoint has no MLM head)"
    mlm = None
    resolved = context.resolved
    if resolved is not None:
        from relforge.models.backbone import quiet_local_io
        from relforge.models.encoder import resolve_backbone_path

        path, local = resolve_backbone_path(resolved.model_settings.backbone)
        try:
            # the missing head is reported below, in one line, instead of transformers' table
            with quiet_local_io(warnings=False):
                mlm, info = AutoModelForMaskedLM.from_pretrained(path, local_files_only=local,
                                                                 output_loading_info=True)
            head_missing = [k for k in info.get("missing_keys", []) if not k.startswith(mlm.base_model_prefix + ".")]
            if not head_missing:
                origin = "loaded from the backbone checkpoint"
        except (OSError, ValueError) as exc:
            print(f"tkre: no masked-LM head in {path} ({type(exc).__name__}); initialising one")
            mlm = None
    if mlm is None:
        mlm = AutoModelForMaskedLM.from_config(encoder.config)
    setattr(mlm, mlm.base_model_prefix, encoder)
    out = mlm.get_output_embeddings()
    out.weight = encoder.get_input_embeddings().weight
    mlm.to(next(encoder.parameters()).device)
    return mlm, origin


# --- shared settings and loop -----------------------------------------------

class _StageSettings(Settings):
    #: texts the stage pretrains on: the task's sentences (K-shot train), the
    #: LLM explanations, the kept synthetic examples
    sources: list[Source] = Field(default_factory=lambda: ["sentences", "explanations", "synthetic"])
    epochs: float = Field(5, gt=0)
    #: stop after this many optimizer steps (overrides epochs)
    max_steps: int | None = Field(None, gt=0)
    batch_size: int = Field(16, gt=0)
    learning_rate: float = Field(2e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    max_grad_norm: float | None = Field(1.0, gt=0)
    max_length: int = Field(128, gt=8)
    mask_between: float = Field(0.8, ge=0, le=1)
    mask_entity: float = Field(0.5, ge=0, le=1)
    mask_other: float = Field(0.2, ge=0, le=1)
    log_every: int = Field(10, gt=0)
    #: learning rate of the MLM head's own parameters (its transform and bias);
    #: null: 1e-3 when the head starts random (no MLM head in the checkpoint), else learning_rate
    head_learning_rate: float | None = Field(None, gt=0)


def encode(tokenizer: Any, corpus: Sequence[PretrainText], max_length: int) -> list[dict[str, Any]]:
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError("tkre pretraining needs a fast tokenizer (character offsets map entity spans onto tokens)")
    enc = tokenizer([t.text for t in corpus], truncation=True, max_length=max_length,
                    return_offsets_mapping=True, return_special_tokens_mask=True)
    items = []
    for i, t in enumerate(corpus):
        roles = token_roles(enc["offset_mapping"][i], enc["special_tokens_mask"][i], t.head, t.tail)
        items.append({"input_ids": enc["input_ids"][i], "roles": roles, "relation": t.relation})
    return items


def pad_batch(items: Sequence[Mapping[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(it["input_ids"]) for it in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    roles = torch.full((len(items), width), SPECIAL, dtype=torch.long)
    att = torch.zeros((len(items), width), dtype=torch.long)
    for i, it in enumerate(items):
        n = len(it["input_ids"])
        ids[i, :n] = torch.tensor(it["input_ids"])
        roles[i, :n] = torch.tensor(it["roles"])
        att[i, :n] = 1
    return {"input_ids": ids, "roles": roles, "attention_mask": att}


def _check_model(model: Any, stage: str) -> None:
    if not isinstance(model, HasEncoder):
        raise TypeError(f"{stage} pretrains an encoder: it needs a model with a bare encoder "
                        f"(relforge.marker_classifier), got {type(model).__name__}")
    if model.tokenizer.mask_token_id is None:
        raise ValueError(f"{stage}: the tokenizer has no mask token")


class _StageModule(torch.nn.Module, HasParameterGroups, ReportsDiagnostics):
    """A stage's training step as a module for the engine's loop: the
    encoder, the MLM head and the stage's extra modules (stage 2's anchors),
    each a parameter group with its own learning rate; ``forward`` masks the
    batch (global RNG: the checkpoint restores it) and returns the stage's
    combined loss, its parts reported as diagnostics."""

    def __init__(self, stage: MaskedSpanLMStage, model: Any, mlm: torch.nn.Module, extra: list, head_lr: float):
        super().__init__()
        self.stage, self.re_model = stage, [model]  # in a list: not a submodule (its other parts stay out)
        self.encoder, self.mlm = model.encoder, mlm
        self.extra = torch.nn.ModuleList([m for m, _ in extra])
        encoder_ids = {id(p) for p in self.encoder.parameters()}
        self._groups = {"encoder": list(self.encoder.parameters()),
                        "head": [p for p in {id(p): p for p in mlm.parameters()}.values() if id(p) not in encoder_ids]}
        self.learning_rates = {"head": head_lr}
        for i, (m, lr) in enumerate(extra):
            self._groups[f"extra{i}"] = list(m.parameters())
            self.learning_rates[f"extra{i}"] = lr
        self._last: dict[str, float] = {}

    def parameter_groups(self) -> dict[str, list[torch.nn.Parameter]]:
        return self._groups

    def forward(self, batch: Mapping[str, Any]) -> ModelOutput:
        s, tok = self.stage.settings, self.re_model[0].tokenizer
        masked, labels = mslm_mask(batch["input_ids"].cpu(), batch["roles"].cpu(), tok.mask_token_id,
                                   between=s.mask_between, entity=s.mask_entity, other=s.mask_other)
        device = batch["input_ids"].device
        losses = {"mslm": self.stage.masked_lm_loss(self.re_model[0], self.mlm, masked.to(device),
                                                    batch["attention_mask"], labels.to(device))}
        losses.update(self.stage.extra_losses(self.re_model[0], batch, batch["items"], random))
        self._last = {k: float(v.detach()) for k, v in losses.items()}
        loss = self.stage.combine(losses)
        return ModelOutput(logits=loss.detach(), loss=loss)

    def step_diagnostics(self) -> dict[str, float]:
        return dict(self._last)

    def eval_diagnostics(self) -> dict[str, float]:
        return {}


class MaskedSpanLMStage(PretrainingStage):
    """Stage 1: masked span language modelling (tokens between the entities
    masked with probability 0.8, entity tokens 0.5, others 0.2; CE on the
    masked positions)."""

    name = "mslm"
    requires = {"model": frozenset({Ability.PRETRAINABLE_ENCODER})}

    class Settings(_StageSettings):
        pass

    stage_label = "mslm"

    def run(self, model: REModel, context: StageContext) -> StageResult:
        _check_model(model, f"tkre.{self.name}")
        if superseded(context, f"pretraining/{self.stage_label}"):
            return StageResult()
        s = self.settings
        tokenizer = model.tokenizer
        corpus, counts = build_corpus(context.train_examples, context, s.sources, model.no_relation)
        record_knowledge_use(context, self.stage_label, counts)
        if not corpus:
            raise ValueError(f"tkre.{self.name}: the pretraining corpus is empty (sources {s.sources})")
        items = encode(tokenizer, corpus, s.max_length)
        device = next(model.encoder.parameters()).device
        mlm, origin = build_mlm_head(model, context)
        print(f"tkre.{self.name}: {len(items)} texts {counts}; MLM head {origin}")
        extra = self.extra_modules(model, items, device)
        head_lr = s.head_learning_rate or (s.learning_rate if origin.startswith("loaded") else 1e-3)
        module = _StageModule(self, model, mlm, extra, head_lr)
        pad = tokenizer.pad_token_id or 0
        try:
            train_stage(module, items, lambda chunk: {**pad_batch(chunk, pad), "items": list(chunk)},
                        context=context, name=f"pretraining/{self.stage_label}", settings={
                            "epochs": s.epochs, "max_steps": s.max_steps, "batch_size": s.batch_size,
                            "learning_rate": s.learning_rate, "weight_decay": s.weight_decay,
                            "max_grad_norm": s.max_grad_norm, "log_every": s.log_every,
                            "group_learning_rates": module.learning_rates})
        finally:
            # drop the head's reference to the encoder; the encoder (shared) keeps its update
            setattr(mlm, mlm.base_model_prefix, None)
        return StageResult()

    @staticmethod
    def masked_lm_loss(model: Any, mlm: torch.nn.Module, masked: torch.Tensor, attention_mask: torch.Tensor,
                       labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy over the masked positions; the vocabulary projection
        runs on those positions only (a third or less of the tokens)."""
        head = getattr(mlm, "cls", None) or getattr(mlm, "lm_head", None)
        if head is None:
            return mslm_loss(mlm(input_ids=masked, attention_mask=attention_mask).logits, labels)
        hidden = model.encoder(input_ids=masked, attention_mask=attention_mask).last_hidden_state
        chosen = labels != -100
        if not bool(chosen.any()):
            return hidden.sum() * 0.0
        return mslm_loss(head(hidden[chosen]).unsqueeze(0), labels[chosen].unsqueeze(0))

    # hooks for stage 2
    def extra_modules(self, model: Any, items: Sequence[Mapping[str, Any]], device) -> list:
        return []

    def extra_losses(self, model: Any, batch: Mapping[str, torch.Tensor], items: Sequence[Mapping[str, Any]],
                     rng: random.Random) -> dict[str, torch.Tensor]:
        return {}

    def combine(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return losses["mslm"]


def random_spans(roles: Sequence[int], count: int, max_len: int, rng: random.Random) -> list[list[int]]:
    """``count`` random contiguous spans (1..max_len tokens) over tokens that are
    neither special, entity nor relation span tokens."""
    free = [i for i, r in enumerate(roles) if r not in (SPECIAL, ENTITY, BETWEEN)]
    if not free:
        return []
    free_set = set(free)
    spans = []
    for _ in range(count):
        start = rng.choice(free)
        length = rng.randint(1, max_len)
        span = [start]
        while len(span) < length and span[-1] + 1 in free_set:
            span.append(span[-1] + 1)
        spans.append(span)
    return spans


class MaskedSpanLMContrastiveStage(MaskedSpanLMStage):
    """Stage 2: MSLM plus span-level contrastive learning. A learned
    relation-type embedding is the anchor, the mean-pooled relation span
    (between the entities) the positive, random irrelevant spans the
    negatives; InfoNCE with temperature 0.1; loss = w1 * MSLM + w2 * SCL.
    Spans are pooled from an unmasked pass over the same text."""

    name = "mslm_scl"
    stage_label = "mslm_scl"

    class Settings(_StageSettings):
        temperature: float = Field(0.1, gt=0)
        mslm_weight: float = Field(1.0, ge=0)
        scl_weight: float = Field(1.0, ge=0)
        num_negatives: int = Field(4, gt=0)
        negative_max_length: int = Field(3, gt=0)
        #: also count the head and tail mention spans as positives (the paper's figure)
        entity_positives: bool = False
        #: the anchors start random; they get their own learning rate
        anchor_learning_rate: float = Field(1e-3, gt=0)

    def extra_modules(self, model: Any, items: Sequence[Mapping[str, Any]], device) -> list:
        labels = [lab for lab in model.labels if lab != model.no_relation]
        extra = sorted({it["relation"] for it in items if it["relation"] is not None} - set(labels))
        self.relation_index = {lab: i for i, lab in enumerate(labels + extra)}
        if not self.relation_index:
            raise ValueError("tkre.mslm_scl: no relation labels to anchor the contrastive loss")
        hidden = model.encoder.config.hidden_size
        self.anchors = torch.nn.Embedding(len(self.relation_index), hidden).to(device)
        torch.nn.init.normal_(self.anchors.weight, std=0.02)
        return [(self.anchors, self.settings.anchor_learning_rate)]

    def extra_losses(self, model: Any, batch: Mapping[str, torch.Tensor], items: Sequence[Mapping[str, Any]],
                     rng: random.Random) -> dict[str, torch.Tensor]:
        s = self.settings
        roles = batch["roles"].cpu()
        width = roles.shape[1]
        rows, pos_lists, neg_lists, rel_ids = [], [], [], []
        for i, it in enumerate(items):
            if it["relation"] is None:
                continue
            r = roles[i].tolist()
            positives = []
            between = [j for j, x in enumerate(r) if x == BETWEEN]
            if between:
                positives.append(between)
            if s.entity_positives:
                positives += _entity_spans(r)
            negatives = random_spans(r, s.num_negatives, s.negative_max_length, rng)
            if not positives or not negatives:
                continue
            rows.append(i)
            pos_lists.append(positives)
            neg_lists.append(negatives)
            rel_ids.append(self.relation_index[it["relation"]])
        device = batch["input_ids"].device
        if not rows:
            return {"scl": self.anchors.weight.sum() * 0.0}
        P = max(len(p) for p in pos_lists)
        N = max(len(n) for n in neg_lists)
        pos_masks = torch.zeros(len(rows), P, width, dtype=torch.bool)
        neg_masks = torch.zeros(len(rows), N, width, dtype=torch.bool)
        pos_valid = torch.zeros(len(rows), P, dtype=torch.bool)
        neg_valid = torch.zeros(len(rows), N, dtype=torch.bool)
        for b, (ps, ns) in enumerate(zip(pos_lists, neg_lists)):
            for j, span in enumerate(ps):
                pos_masks[b, j, span] = True
                pos_valid[b, j] = True
            for j, span in enumerate(ns):
                neg_masks[b, j, span] = True
                neg_valid[b, j] = True
        idx = torch.tensor(rows, device=device)
        # the unmasked pass: spans are pooled from the text as it is
        hidden = model.encoder(input_ids=batch["input_ids"][idx],
                               attention_mask=batch["attention_mask"][idx]).last_hidden_state
        anchor = self.anchors(torch.tensor(rel_ids, device=device))
        loss = span_infonce(anchor, mean_pool(hidden, pos_masks.to(device)), pos_valid.to(device),
                            mean_pool(hidden, neg_masks.to(device)), neg_valid.to(device), s.temperature)
        return {"scl": loss}

    def combine(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.settings.mslm_weight * losses["mslm"] + self.settings.scl_weight * losses["scl"]


def _entity_spans(roles: Sequence[int]) -> list[list[int]]:
    spans, cur = [], []
    for j, x in enumerate(roles):
        if x == ENTITY and (not cur or cur[-1] == j - 1):
            cur.append(j)
        else:
            if cur:
                spans.append(cur)
            cur = [j] if x == ENTITY else []
    if cur:
        spans.append(cur)
    return spans
