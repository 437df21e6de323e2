"""The ETRAG model: a SuRE generator whose encoder input carries soft prompts
made from a trainable retriever's query vector and k (soft) neighbours.

Memory: one item per (training example, gold target), its text the SuRE
source, the retriever tokenizer's separator and the gold summary; its vector
stack the mean-pooled retriever states over the head mention, the tail
mention and the summary span. A query is the SuRE source alone; its third
span is the final (separator) token, as in the public code, where the query
has no summary (option ``query_label_span: sentence`` pools the sentence).

Training (each step): the batch's queries and a random pool of
``pool_size`` memory items are encoded with gradients (``pool_gradients:
false`` reads the pool from the cache instead: faster, not the paper's), the retriever selects
k neighbours from the pool with the query's own example hidden from it, and
the projected [query; neighbours] vectors go into the generator's encoder
after its first token. The generation loss is the only loss, so it is what
trains the retriever. Inference: the whole memory is encoded (no gradients)
into a cache, re-encoded when it is read and is ``refresh_every`` or more
training steps old (with ``refresh_before_eval``, any step old); queries retrieve from the cache
(optionally from its top ``search_candidates`` rows found by
:class:`~relforge_etrag.retrievers.MemorySearch`, torch or FAISS).

``k = 0`` is the SuRE baseline in the same code path: no prompts, no
retriever.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from relforge import progress
from relforge.components import (
    Ability, HasRetriever, ModelParts, RanksEncoded, ReportsDiagnostics, ScoredCandidate, Seq2SeqBatch,
    Seq2SeqOutput, Seq2SeqSettings,
)
from relforge.data.example import Example
from relforge.engine.models import LOSS_STATE_FILE, GenerativeREModel, model_device, write_meta
from relforge.engine.precision import full_precision

from relforge_etrag.retrievers import MemorySearch

ETRAG_FILE = "etrag.json"
ETRAG_TENSORS = "etrag.safetensors"


class LoraOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    r: int = Field(32, gt=0)
    alpha: int = Field(64, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    #: module names to adapt; None: peft's default for the architecture
    target_modules: list[str] | None = None


class ETRAGSettings(Seq2SeqSettings):
    """The ``model`` section of an ETRAG run (``model: {name: etrag.rag, k: 5,
    ...}``); unknown keys are errors."""

    #: neighbours per query; 0: the SuRE baseline (no retrieval, no prompts)
    k: int = Field(5, ge=0)
    #: memory items drawn (and encoded with gradients) per training step
    pool_size: int = Field(32, gt=0)
    #: True (the paper and its public code): the step's pool is encoded with gradients, so the
    #: generation loss trains the retriever through the memory side as well as the queries. False
    #: (a departure, for speed; issue #20): the pool's vectors are read from the memory cache
    #: (no gradients, re-encoded every ``refresh_every`` training steps) and the retriever learns
    #: through the queries only. ``benchmarks/perf/etrag_step.py`` measures both against SuRE; on
    #: SemEval 5% (three seeds) False scored 0.016 official macro-F1 lower
    #: (``benchmarks/results/etrag-step-cpu-2026-12-04.md``).
    pool_gradients: bool = True
    #: refresh the cached memory vectors every N training steps
    refresh_every: int = Field(100, gt=0)
    #: re-encode the memory before an evaluation that follows training steps
    refresh_before_eval: bool = True
    retriever_backbone: str = "minilm"
    retriever_max_length: int = Field(256, gt=0)
    #: where the soft prompts go: after the encoder's first token, or in front
    insert: Literal["after_first", "prepend"] = "after_first"
    #: encoders with absolute position embeddings (BERT-style, the default
    #: MiniLM encoder-decoder): "keep" gives every prompt the first token's
    #: position and the source tokens the positions they have without prompts;
    #: "shift" numbers prompts and tokens consecutively, moving every source
    #: token (1 + k) * 3 places. Relative-position encoders (T5) ignore it.
    prompt_positions: Literal["keep", "shift"] = "keep"
    #: the query's third span: its final token (public code) or its sentence
    query_label_span: Literal["end", "sentence"] = "end"
    #: candidate search over the cached memory at inference
    memory_search: Literal["torch", "faiss"] = "torch"
    #: retrieve among each query's top-C cached rows (None: the whole memory)
    search_candidates: int | None = Field(None, gt=0)
    #: encoding batch size for the memory cache
    memory_batch_size: int = Field(64, gt=0)
    #: LoRA on the generator through peft (None: full fine-tuning)
    lora: LoraOptions | None = None
    #: seed of the per-step pool draws (and of the oracle probes' draws)
    pool_seed: int = 0
    #: a probe, not a method (issue #17, relforge_etrag.analysis): the
    #: neighbours are chosen by the gold labels instead of the retriever, in
    #: training and evaluation alike. "gold": k memory items with one of the
    #: query's gold labels; "random": k random items; "self": the query's own
    #: gold item (source + gold summary), the leak the method forbids. "none":
    #: the retriever chooses (the method).
    #: "gold-one": one item with a gold label, repeated k times (tells apart what "self" lacks against
    #: "gold": k different items, or the item's own content).
    oracle: Literal["none", "gold", "gold-one", "random", "self"] = "none"

    @model_validator(mode="after")
    def _oracle_needs_neighbours(self):
        if self.oracle != "none" and self.k == 0:
            raise ValueError(f"model.oracle={self.oracle} needs neighbours: set model.k > 0")
        return self


def _add(into: dict[str, list[float]], key: str, value: float) -> None:
    """Add ``value`` to the running (sum, count) of ``key``."""
    acc = into.setdefault(key, [0.0, 0])
    acc[0] += value
    acc[1] += 1


# ---- the retriever encoder -----------------------------------------------------

class SpanEncoder(torch.nn.Module):
    """A (MiniLM by default) encoder producing mean-pooled span vectors."""

    def __init__(self, encoder, tokenizer, max_length: int) -> None:
        super().__init__()
        self.encoder, self.tokenizer, self.max_length = encoder, tokenizer, max_length
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("the retriever needs a fast tokenizer (character offsets for the spans)")

    @property
    def hidden_size(self) -> int:
        return int(self.encoder.config.hidden_size)

    def forward(self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int] | None]]) -> torch.Tensor:
        """(len(texts), S, H). A span is (start, end) characters of the text;
        None is the final non-padding token. A span lost to truncation falls
        back to the first token."""
        dev = next(self.encoder.parameters()).device
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt", return_offsets_mapping=True)
        offsets = enc.pop("offset_mapping")
        enc = {k: v.to(dev) for k, v in enc.items()}
        hidden = self.encoder(**enc).last_hidden_state
        n, t = enc["input_ids"].shape
        s = len(spans[0])
        mask = torch.zeros(n, s, t, dtype=torch.bool)
        a, b = offsets[..., 0], offsets[..., 1]
        real = b > a
        last = enc["attention_mask"].sum(1).cpu() - 1
        for i, row in enumerate(spans):
            for j, span in enumerate(row):
                if span is None:
                    mask[i, j, last[i]] = True
                    continue
                m = real[i] & (a[i] < span[1]) & (b[i] > span[0])
                if not bool(m.any()):
                    m = torch.zeros(t, dtype=torch.bool)
                    m[0] = True
                mask[i, j] = m
        mask = mask.to(dev).to(hidden.dtype)
        return torch.einsum("nst,nth->nsh", mask, hidden) / mask.sum(-1, keepdim=True)


def has_absolute_positions(encoder) -> bool:
    """Whether ``encoder`` adds learned absolute position embeddings and takes
    ``position_ids`` (BERT-style encoders; not T5 or BART)."""
    import inspect

    table = getattr(getattr(encoder, "embeddings", None), "position_embeddings", None)
    kind = getattr(getattr(encoder, "config", None), "position_embedding_type", "absolute")
    return (isinstance(table, torch.nn.Embedding) and kind == "absolute"
            and "position_ids" in inspect.signature(encoder.forward).parameters)


# ---- the model -------------------------------------------------------------------

def apply_lora(backbone, lora: LoraOptions):
    try:
        import peft
    except ImportError as exc:
        raise ImportError("model.lora needs the `peft` package: pip install peft") from exc
    cfg = peft.LoraConfig(task_type=peft.TaskType.SEQ_2_SEQ_LM, r=lora.r, lora_alpha=lora.alpha,
                          lora_dropout=lora.dropout, target_modules=lora.target_modules)
    return peft.get_peft_model(backbone, cfg)


class ETRAGModel(GenerativeREModel, HasRetriever, ReportsDiagnostics):
    """The registered model ``etrag.rag``: a seq2seq generator whose encoder
    input carries soft prompts from the configured retriever (``retriever``
    section) over a memory of training instances; ranking goes through the
    configured decoder's :meth:`~relforge.components.RanksEncoded.rank_encoded`
    on the prompted encoder states."""

    name = "rag"
    Settings = ETRAGSettings
    settings: ETRAGSettings
    uses = frozenset({"template", "loss", "decoder", "retriever"})
    needs = frozenset({"template", "loss", "decoder"})
    provides = frozenset({Ability.SEQ2SEQ, Ability.TOKEN_TARGETS, Ability.ENCODER_STATES, Ability.RETRIEVAL})
    requires = {"template": frozenset({Ability.TEXT_TARGETS, Ability.ENTITY_SPANS}),
                "decoder": frozenset({Ability.ENCODED_SCORING}),
                "retriever": frozenset({Ability.SPAN_MEMORY})}
    # the groups exist (empty) with k = 0 too, so one configuration with
    # train.group_learning_rates for them serves both SuRE and ETRAG
    group_names: ClassVar[frozenset[str]] = frozenset({"backbone", "loss", "retriever", "projection"})

    @classmethod
    def needed_sections(cls, settings: ETRAGSettings) -> frozenset[str]:
        return cls.needs | ({"retriever"} if settings.k > 0 else set())

    @classmethod
    def requirements(cls, settings: ETRAGSettings):
        req = super().requirements(settings)
        return req if settings.k > 0 else {k: v for k, v in req.items() if k != "retriever"}

    def __init__(self, backbone, tokenizer, *, template, loss, decoder, retriever, labels, label_words,
                 no_relation, settings: ETRAGSettings, span_encoder: SpanEncoder | None,
                 decision_threshold: float | None = None) -> None:
        super().__init__(backbone, tokenizer, template=template, loss=loss, decoder=decoder, labels=labels,
                         label_words=label_words, no_relation=no_relation,
                         max_source_length=settings.max_source_length,
                         max_target_length=settings.max_target_length, decision_threshold=decision_threshold,
                         settings=settings)
        self.retriever = retriever
        if not isinstance(decoder, RanksEncoded):
            raise ValueError(f"etrag.rag ranks from its prompted encoder states: decoder {type(decoder).name!r} "
                             f"cannot (use relforge.sure or relforge.exact)")
        self.span_encoder = span_encoder
        self._absolute_positions = has_absolute_positions(self.backbone.get_encoder())
        self.projection = None
        if settings.k > 0:
            if span_encoder is None or retriever is None:
                raise ValueError("model.k > 0 needs a retriever (the retriever section) and its encoder")
            d_model = int(self.backbone.get_input_embeddings().weight.shape[1])
            self.projection = torch.nn.Linear(span_encoder.hidden_size, d_model)
        # memory: items (texts, spans, labels, example index) and the cache
        self.memory_items: list[dict[str, Any]] = []
        self._memory_key: tuple | None = None
        self.memory_cache: torch.Tensor | None = None
        self._search: MemorySearch | None = None
        self.train_steps = 0
        self._cache_step = -1
        self._pool_gen = torch.Generator().manual_seed(settings.pool_seed)
        #: the last training step's retrieval (weights, pool rows, query gold labels), for analysis
        self.last_retrieval: dict[str, Any] | None = None
        self._oracle_gen = torch.Generator().manual_seed(settings.pool_seed + 1)
        #: inference's oracle draws: re-seeded at every rank(), so a ranking depends on the weights and the
        #: examples only (a trained model in memory and the same model loaded rank alike)
        self._oracle_eval_gen = torch.Generator().manual_seed(settings.pool_seed + 2)
        self._label_rows: dict[str, torch.Tensor] | None = None
        #: queries for which an oracle found no memory item with their gold label (random ones were used)
        self.oracle_fallbacks = 0
        # running (sum, count) of the retrieval diagnostics, taken by step_/eval_diagnostics
        self._train_diag: dict[str, list[float]] = {}
        self._eval_diag: dict[str, list[float]] = {}
        if settings.oracle != "none":
            print(f"etrag.rag: model.oracle={settings.oracle}: neighbours are chosen with the gold labels of the "
                  f"scored examples (a probe of the generator, not a result of the method)")

    @classmethod
    def build(cls, settings: ETRAGSettings, parts: ModelParts) -> ETRAGModel:
        from relforge.models.backbone import load_seq2seq
        from relforge.models.encoder import load_encoder

        specials = tuple(parts.template.special_tokens)
        folder = Path(parts.from_folder) if parts.from_folder is not None else None
        if folder is not None and settings.lora is not None:
            import peft

            base, tokenizer = load_seq2seq(settings.backbone, special_tokens=specials)
            backbone = peft.PeftModel.from_pretrained(base, str(folder / "lora"))
        else:
            backbone, tokenizer = cls.load_backbone(settings, parts)
            if settings.lora is not None:
                if type(backbone).__name__ == "EncoderDecoderModel":
                    # LoRA freezes the base weights, and the saved adapters restore only themselves: a
                    # warm-started decoder's cross-attention is new, so it would stay at its random start and
                    # come back as another random draw when the model is loaded
                    raise ValueError(f"model.lora: the backbone {settings.backbone!r} is an encoder-only checkpoint "
                                     f"warm-started as an encoder-decoder, whose new cross-attention LoRA would "
                                     f"leave untrained and could not restore; use full fine-tuning (model.lora: "
                                     f"null) or a seq2seq checkpoint (T5, Flan-T5, BART)")
                backbone = apply_lora(backbone, settings.lora)
        span_encoder = None
        if settings.k > 0:
            enc, enc_tok = load_encoder(str(folder / "retriever") if folder else settings.retriever_backbone)
            span_encoder = SpanEncoder(enc, enc_tok, settings.retriever_max_length)
        model = cls(backbone, tokenizer, template=parts.template, loss=parts.loss, decoder=parts.decoder,
                    retriever=parts.retriever if settings.k > 0 else None, labels=parts.labels,
                    label_words=parts.label_words, no_relation=parts.no_relation, settings=settings,
                    span_encoder=span_encoder, decision_threshold=parts.decision_threshold)
        if folder is not None:
            model.load_common_state(folder)
            model.load_state(folder)
        return model

    # ---- groups, memory ------------------------------------------------------

    def parameter_groups(self) -> dict[str, list[torch.nn.Parameter]]:
        groups = super().parameter_groups()
        groups["retriever"] = list(self.span_encoder.parameters()) if self.span_encoder is not None else []
        groups["projection"] = list(self.projection.parameters()) if self.projection is not None else []
        return groups

    def retriever_parameters(self) -> list[torch.nn.Parameter]:
        groups = self.parameter_groups()
        return groups["retriever"] + groups["projection"]

    def _sep(self) -> str:
        tok = self.span_encoder.tokenizer if self.span_encoder is not None else self.tokenizer
        return tok.sep_token or tok.eos_token or "|"

    def set_memory(self, examples: Sequence[Example]) -> None:
        """Make the memory from the training examples (one item per gold target)."""
        key = tuple(ex.id for ex in examples)
        if key == self._memory_key:
            return
        self.template.fit(examples)
        sep = self._sep()
        items = []
        for i, ex in enumerate(examples):
            rendered, targets = self.render(ex)
            golds = sorted(ex.relations) or [self.no_relation]
            for label, target in zip(golds, targets):
                prefix = f"{rendered.source} {sep} "
                items.append({"text": prefix + target, "head": list(rendered.extra["head_span"]),
                              "tail": list(rendered.extra["tail_span"]),
                              "summary": [len(prefix), len(prefix) + len(target)], "label": label, "example": i})
        self.memory_items, self._memory_key = items, key
        self.memory_cache, self._search, self._cache_step = None, None, -1
        self._label_rows = None

    def _memory_example(self) -> torch.Tensor:
        return torch.tensor([it["example"] for it in self.memory_items], dtype=torch.long)

    def encode_memory(self, rows: Sequence[int]) -> torch.Tensor:
        items = [self.memory_items[r] for r in rows]
        return self.span_encoder([it["text"] for it in items],
                                 [[tuple(it["head"]), tuple(it["tail"]), tuple(it["summary"])] for it in items])

    def encode_queries(self, sources: Sequence[str], extras: Sequence[Mapping[str, Any]]) -> torch.Tensor:
        """(B, 3, H) query vectors: head, tail and the final token (or the
        sentence, ``query_label_span: sentence``) of each SuRE source."""
        end = self.settings.query_label_span == "end"
        return self.span_encoder(list(sources), [[tuple(x["head_span"]), tuple(x["tail_span"]),
                                                  None if end else tuple(x["sentence_span"])] for x in extras])

    @torch.no_grad()
    def refresh_memory(self) -> None:
        if not self.memory_items:
            raise ValueError("the ETRAG memory is empty: call features(train_examples, training=True) or "
                             "set_memory(train_examples) first")
        was = self.span_encoder.training
        self.span_encoder.eval()
        bs = self.settings.memory_batch_size
        # in full precision even when refreshed inside a bf16 training step (pool_gradients: false): the
        # cache is what evaluation retrieves from and what the saved model keeps
        with full_precision(next(self.span_encoder.parameters())):
            chunks = [self.encode_memory(range(a, min(a + bs, len(self.memory_items))))
                      for a in range(0, len(self.memory_items), bs)]
        self.span_encoder.train(was)
        self.memory_cache = torch.cat(chunks).detach().float()
        self._search = None
        self._cache_step = self.train_steps

    # ---- data ---------------------------------------------------------------

    def features(self, examples: Sequence[Example], training: bool = True) -> list[dict[str, Any]]:
        if training and self.settings.k > 0:
            self.set_memory(examples)
        return super().features(examples, training)

    def collate(self, features: Sequence[Mapping[str, Any]]) -> Seq2SeqBatch:
        """The core's batch, its rows also carrying the source, the gold target
        and the gold labels (what the oracle probes and the diagnostics read)."""
        batch = super().collate(features)
        for row, f in zip(batch.rows, features):
            row.update(source=f["source"], target=f["target"], gold=list(f["gold"]))
        return batch

    # ---- soft prompts ---------------------------------------------------------

    def insert_prompts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       prompts: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs_embeds, attention_mask) with ``prompts`` (B, P, D) placed after
        the first token (or in front), the mask extended with ones there."""
        embeds = self.backbone.get_input_embeddings()(input_ids)
        if prompts is None or prompts.shape[1] == 0:
            return embeds, attention_mask
        prompts = prompts.to(embeds.dtype)
        ones = torch.ones(prompts.shape[:2], dtype=attention_mask.dtype, device=attention_mask.device)
        if self.settings.insert == "prepend":
            return torch.cat([prompts, embeds], 1), torch.cat([ones, attention_mask], 1)
        return (torch.cat([embeds[:, :1], prompts, embeds[:, 1:]], 1),
                torch.cat([attention_mask[:, :1], ones, attention_mask[:, 1:]], 1))

    def prompt_position_ids(self, input_ids: torch.Tensor, n_prompts: int) -> torch.Tensor | None:
        """The encoder's ``position_ids`` for an input with ``n_prompts`` soft
        prompts inserted (``prompt_positions: keep``), or None: no prompts,
        ``shift``, or an encoder without absolute position embeddings."""
        if n_prompts == 0 or self.settings.prompt_positions != "keep" or not self._absolute_positions:
            return None
        b, t = input_ids.shape
        tokens = torch.arange(t, device=input_ids.device)
        first = torch.zeros(n_prompts, dtype=torch.long, device=input_ids.device)
        order = [first, tokens] if self.settings.insert == "prepend" else [tokens[:1], first, tokens[1:]]
        return torch.cat(order).unsqueeze(0).expand(b, -1)

    def _encoder_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                        prompts: torch.Tensor | None) -> dict[str, torch.Tensor]:
        embeds, att = self.insert_prompts(input_ids, attention_mask, prompts)
        out = {"inputs_embeds": embeds, "attention_mask": att}
        pos = self.prompt_position_ids(input_ids, 0 if prompts is None else prompts.shape[1])
        if pos is not None:
            out["position_ids"] = pos
        return out

    def make_prompts(self, query: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
        b, s, h = query.shape
        stack = torch.cat([query, neighbours.reshape(b, -1, h)], 1)  # (B, (1 + k) S, H)
        return self.projection(stack)

    def _train_prompts(self, batch: Seq2SeqBatch) -> torch.Tensor | None:
        if self.settings.k == 0:
            return None
        if not self.memory_items:
            raise ValueError("the ETRAG memory is empty: features(train_examples, training=True) builds it")
        query = self.encode_queries(batch.sources, [r["extra"] for r in batch.rows])
        if self.settings.oracle != "none":
            return self.make_prompts(query, self._oracle_neighbours(batch.rows, training=True))
        n = len(self.memory_items)
        size = min(self.settings.pool_size, n)
        pool = torch.randperm(n, generator=self._pool_gen)[:size]
        if self.settings.pool_gradients:
            pool_vecs = self.encode_memory(pool.tolist())
        else:  # the cached vectors, refreshed every refresh_every steps (not before every step)
            self.ensure_cache(for_training=True)
            pool_vecs = self.memory_cache[pool].to(query.device)
        own = torch.tensor([r["example"] for r in batch.rows], dtype=torch.long)
        exclude = self._memory_example()[pool][None, :] == own[:, None]
        exclude &= (own >= 0)[:, None]
        r = self.retriever.retrieve(query, pool_vecs, self.settings.k, exclude.to(query.device))
        self.last_retrieval = {"weights": r.weights.detach(), "pool": pool, "indices": pool[r.indices.cpu()],
                               "gold": [list(g) for g in batch.gold]}
        self._record(self._train_diag, r.weights.detach(), self.last_retrieval["indices"], batch.gold)
        prompts = self.make_prompts(query, r.neighbours)
        self._record_prompt_scale(self._train_diag, prompts)
        return prompts

    def retrieve_cached(self, sources: Sequence[str],
                        extras: Sequence[Mapping[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(prompts, memory rows (B, k)) for inference from the cached memory."""
        self.ensure_cache()
        query = self.encode_queries(sources, extras)
        mem = self.memory_cache.to(query.device)
        k = min(self.settings.k, mem.shape[0])
        if not self.settings.search_candidates:
            r = self.retriever.retrieve(query, mem, k)
            self._last_weights = r.weights
            return self.make_prompts(query, r.neighbours), r.indices
        if self._search is None:  # built once per refresh of the cache
            self._search = MemorySearch(self.memory_cache, self.settings.memory_search)
        _, cand = self._search.search(query, self.settings.search_candidates)
        neigh, rows = [], []
        for i in range(query.shape[0]):
            r = self.retriever.retrieve(query[i:i + 1], mem[cand[i]], min(k, cand.shape[1]))
            neigh.append(r.neighbours)
            rows.append(cand[i][r.indices[0]])
        return self.make_prompts(query, torch.cat(neigh)), torch.stack(rows)

    def ensure_cache(self, for_training: bool = False) -> None:
        # lazily: the cache is re-encoded when read and older than
        # refresh_every training steps, or, read at inference with
        # refresh_before_eval, older than the last step; a training step
        # (pool_gradients: false) reads it without that
        age = self.train_steps - self._cache_step
        stale = self.memory_cache is None or age >= self.settings.refresh_every or (
            not for_training and self.settings.refresh_before_eval and age > 0)
        if stale:
            self.refresh_memory()

    def prompted_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, sources: Sequence[str],
                        extras: Sequence[Mapping[str, Any]],
                        rows: Sequence[Mapping[str, Any]] | None = None) -> dict[str, torch.Tensor]:
        """The encoder inputs with inference-time prompts (none with k = 0).
        ``rows`` (the feature records, with their gold labels) are what an
        oracle probe chooses neighbours by, and what the dev diagnostics
        compare the retrieved neighbours' labels with."""
        prompts = None
        if self.settings.k > 0 and self.settings.oracle != "none":
            if rows is None:
                raise ValueError(f"model.oracle={self.settings.oracle} chooses neighbours by the gold labels: "
                                 f"the scored feature records are needed")
            query = self.encode_queries(sources, extras)
            prompts = self.make_prompts(query, self._oracle_neighbours(rows, training=False))
        elif self.settings.k > 0:
            self._last_weights = None
            prompts, found = self.retrieve_cached(sources, extras)
            if rows is not None:
                self._record(self._eval_diag, self._last_weights, found.cpu(), [r["gold"] for r in rows])
                self._record_prompt_scale(self._eval_diag, prompts)
        return self._encoder_inputs(input_ids, attention_mask,
                                    None if prompts is None else prompts.to(input_ids.device))

    # ---- training and inference -------------------------------------------

    def forward(self, batch: Seq2SeqBatch) -> Seq2SeqOutput:
        if self.training:
            self.train_steps += 1
            prompts = self._train_prompts(batch)
            inputs = self._encoder_inputs(batch.input_ids, batch.attention_mask,
                                          None if prompts is None else prompts.to(batch.input_ids.device))
        else:
            inputs = self.prompted_inputs(batch.input_ids, batch.attention_mask, batch.sources,
                                          [r["extra"] for r in batch.rows], batch.rows)
        out = self.backbone(**inputs, labels=batch.labels)
        return self.with_loss(out, batch, inputs["attention_mask"])

    @torch.no_grad()
    def rank(self, examples: Sequence[Example], batch_size: int = 32,
             labels: Sequence[str] | None = None) -> list[list[ScoredCandidate]]:
        """Candidates ranked per example by the decoder's ``rank_encoded`` on
        the prompted encoder states; ``labels`` restricts the candidates."""
        was_training = self.training
        self.eval()
        self.check_labels(labels)
        self._oracle_eval_gen.manual_seed(self.settings.pool_seed + 2)
        dev = model_device(self.backbone)
        rankings: list[list[ScoredCandidate]] = []
        before, self._quiet_truncation = self.truncated_total, True  # said once below, not per batch
        try:
            for part in progress.batches(examples, batch_size):
                feats = self.features(part, training=False)
                sources = [f["source"] for f in feats]
                enc = self.tokenizer(sources, padding=True, truncation=True, max_length=self.max_source_length,
                                     return_tensors="pt")
                inputs = self.prompted_inputs(enc["input_ids"].to(dev), enc["attention_mask"].to(dev), sources,
                                              [f["extra"] for f in feats], feats)
                hidden = self.backbone.get_encoder()(**inputs).last_hidden_state
                candidates = [self.restrict(f["candidates"], labels) for f in feats]
                rankings += self.decoder.rank_encoded(self.backbone, self.tokenizer, hidden,
                                                      inputs["attention_mask"], candidates)
        finally:
            self.train(was_training)
            self._quiet_truncation = False
        self.say_truncated(self.truncated_total - before, "scoring")
        return self.shift_scores(rankings)

    # ---- oracle probes ------------------------------------------------------

    def _rows_by_label(self) -> dict[str, torch.Tensor]:
        if self._label_rows is None:
            by: dict[str, list[int]] = {}
            for i, it in enumerate(self.memory_items):
                by.setdefault(it["label"], []).append(i)
            self._label_rows = {lab: torch.tensor(rows, dtype=torch.long) for lab, rows in by.items()}
        return self._label_rows

    def oracle_rows(self, rows: Sequence[Mapping[str, Any]], generator: torch.Generator | None = None
                    ) -> torch.Tensor:
        """(B, k) memory rows an oracle probe gives each query: items with one
        of its gold labels ("gold"; "gold-one": one such item k times) or any items ("random"), never of its own
        training example; drawn without replacement where there are k or more,
        with replacement otherwise. A query whose gold labels have no item gets
        random ones (counted in ``oracle_fallbacks``)."""
        k, n = self.settings.k, len(self.memory_items)
        if n == 0:
            raise ValueError("the ETRAG memory is empty: features(train_examples, training=True) builds it")
        gen = generator or self._oracle_gen
        example = self._memory_example()
        out = []
        for r in rows:
            own = int(r.get("example", -1))  # -1: a scored example, not a training one
            if self.settings.oracle in ("gold", "gold-one"):
                by = self._rows_by_label()
                cand = torch.cat([by[g] for g in r["gold"] if g in by] or [torch.empty(0, dtype=torch.long)])
            else:
                cand = torch.arange(n)
            if own >= 0:
                cand = cand[example[cand] != own]
            if len(cand) == 0:  # no item of the query's labels outside its own example
                self.oracle_fallbacks += 1
                cand = torch.arange(n)
                cand = cand[example != own] if own >= 0 else cand
            if self.settings.oracle == "gold-one":
                pick = cand[torch.randint(len(cand), (1,), generator=gen)].repeat(k)
            elif len(cand) >= k:
                pick = cand[torch.randperm(len(cand), generator=gen)[:k]]
            else:
                pick = cand[torch.randint(len(cand), (k,), generator=gen)]
            out.append(pick)
        return torch.stack(out)

    def _oracle_neighbours(self, rows: Sequence[Mapping[str, Any]], training: bool) -> torch.Tensor:
        """(B, k, S, H) neighbour vectors chosen by the oracle probe."""
        k = self.settings.k
        if self.settings.oracle == "self":
            sep = self._sep()
            texts, spans = [], []
            for r in rows:
                prefix = f"{r['source']} {sep} "
                texts.append(prefix + r["target"])
                spans.append([tuple(r["extra"]["head_span"]), tuple(r["extra"]["tail_span"]),
                              (len(prefix), len(prefix) + len(r["target"]))])
            own = self.span_encoder(texts, spans)
            return own[:, None].expand(-1, k, -1, -1)
        picked = self.oracle_rows(rows, None if training else self._oracle_eval_gen)
        if training:
            vecs = self.encode_memory(picked.reshape(-1).tolist())
        else:
            self.ensure_cache()
            vecs = self.memory_cache[picked.reshape(-1)].to(next(self.span_encoder.parameters()).device)
        return vecs.reshape(len(rows), k, *vecs.shape[1:])

    # ---- diagnostics (ReportsDiagnostics) -----------------------------------------

    def _record(self, into: dict[str, list[float]], weights: torch.Tensor | None, found: torch.Tensor,
                golds: Sequence[Sequence[str]]) -> None:
        """Per retrieval: how spread the selection weights are and how often
        the chosen neighbours share the query's gold label."""
        if weights is not None:
            w = weights.float()
            entropy = -(w * w.clamp_min(1e-12).log()).sum(-1)  # (B, k), nats
            _add(into, "retrieval/weight_entropy", float(entropy.mean()))
            _add(into, "retrieval/effective_rows", float(entropy.exp().mean()))
            _add(into, "retrieval/top_weight", float(w.max(-1).values.mean()))
        from relforge_etrag.analysis import agreement_hits

        rows = found.cpu().tolist()
        k = len(rows[0])
        top1, every = agreement_hits(self.memory_items, rows, golds)
        _add(into, "retrieval/distinct_neighbours", sum(len(set(row)) for row in rows) / (k * len(rows)))
        _add(into, "retrieval/agreement_top1", top1 / len(rows))
        _add(into, "retrieval/agreement_at_k", every / (k * len(rows)))

    @staticmethod
    def _record_prompt_scale(into: dict[str, list[float]], prompts: torch.Tensor) -> None:
        """The mean norm of the soft prompts; :meth:`_take` turns it into
        ``prompt_norm_ratio``."""
        _add(into, "retrieval/prompt_norm", float(prompts.detach().norm(dim=-1).mean()))

    def _take(self, into: dict[str, list[float]]) -> dict[str, float]:
        """The means of what was gathered; the prompts' mean norm as a ratio
        to the mean norm of the token embeddings they sit among (a prompt far
        smaller is easy to ignore, one far larger swamps the sentence), the
        embedding table's norm computed once here rather than per batch."""
        out = {k: total / count for k, (total, count) in into.items() if count}
        into.clear()
        if "retrieval/prompt_norm" in out:
            with torch.no_grad():
                table = self.backbone.get_input_embeddings().weight.norm(dim=-1).mean()
            out["retrieval/prompt_norm_ratio"] = out.pop("retrieval/prompt_norm") / float(table)
        return out

    @staticmethod
    def _grad_norm(params) -> float:
        sq = [p.grad.detach().float().pow(2).sum() for p in params if p.grad is not None]
        return float(torch.stack(sq).sum().sqrt()) if sq else 0.0

    def step_diagnostics(self) -> dict[str, float]:
        """The retrieval figures of the steps since the last call (means),
        the gradient norms of the retriever, the projection and the generator
        at this step (before clipping), and the oracle fallbacks so far."""
        if self.settings.k == 0:
            return {}
        out = self._take(self._train_diag)
        groups = self.parameter_groups()
        out["retrieval/grad_norm_retriever"] = self._grad_norm(groups["retriever"])
        out["retrieval/grad_norm_projection"] = self._grad_norm(groups["projection"])
        out["retrieval/grad_norm_generator"] = self._grad_norm(groups["backbone"])
        if self.settings.oracle != "none":
            out["retrieval/oracle_fallbacks"] = float(self.oracle_fallbacks)
        return out

    def eval_diagnostics(self) -> dict[str, float]:
        """The retrieval figures of the queries ranked since the last call
        (a dev evaluation): label agreement of the retrieved neighbours at
        rank 1 and over k, their distinctness, the weights' spread."""
        return self._take(self._eval_diag)

    # ---- saving ----------------------------------------------------------------

    def save(self, folder: Path, meta: Mapping[str, Any]) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.settings.lora is not None:
            self.backbone.save_pretrained(folder / "lora")
        else:
            self.backbone.save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)
        self.save_loss_state(folder)
        if self.settings.k > 0:
            self.span_encoder.encoder.save_pretrained(folder / "retriever", safe_serialization=True)
            self.span_encoder.tokenizer.save_pretrained(folder / "retriever")
            self.ensure_cache()
            tensors = {f"projection.{k}": v.detach().cpu().contiguous()
                       for k, v in self.projection.state_dict().items()}
            tensors["memory_cache"] = self.memory_cache.cpu().contiguous()
            save_file(tensors, folder / ETRAG_TENSORS)
        state = {"memory_items": self.memory_items, "memory_key": list(self._memory_key or ()),
                 "train_steps": self.train_steps}
        (folder / ETRAG_FILE).write_text(json.dumps(state), encoding="utf-8")
        write_meta(folder, {**meta, **self.common_meta(), "etrag": ETRAG_FILE})

    def load_state(self, folder: Path) -> None:
        """The memory, its cache and the projection of a saved folder (folders
        saved before the model contract kept the template state and the loss
        parameters here too; they are read)."""
        from safetensors.torch import load_file

        folder = Path(folder)
        state = json.loads((folder / ETRAG_FILE).read_text(encoding="utf-8"))
        if "templates" in state:  # an older folder
            self.template.load_template_state({"templates": state["templates"],
                                               "constraints": state.get("constraints", {}),
                                               "no_relation": self.no_relation})
        self.memory_items = state["memory_items"]
        self._memory_key = tuple(state["memory_key"]) or None
        self.train_steps = self._cache_step = int(state["train_steps"])
        path = folder / ETRAG_TENSORS
        if path.exists():
            tensors = load_file(path)
            if self.projection is not None:
                self.projection.load_state_dict({k[len("projection."):]: v for k, v in tensors.items()
                                                 if k.startswith("projection.")})
            if "memory_cache" in tensors:
                self.memory_cache = tensors["memory_cache"]
                self._search = None
            loss_state = {k[len("loss."):]: v for k, v in tensors.items() if k.startswith("loss.")}
            if loss_state and isinstance(self.loss_fn, torch.nn.Module) and not (folder / LOSS_STATE_FILE).exists():
                self.loss_fn.load_state_dict(loss_state)
