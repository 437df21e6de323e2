"""The ETRAG model: a SuRE generator whose encoder input carries soft prompts
made from a trainable retriever's query vector and k (soft) neighbours.

Memory: one item per (training example, gold target), its text the SuRE
source, the retriever tokenizer's separator and the gold summary; its vector
stack the mean-pooled retriever states over the head mention, the tail
mention and the summary span. A query is the SuRE source alone; its third
span is the final (separator) token, as in the public code, where the query
has no summary (option ``query_label_span: sentence`` pools the sentence).

Training (each step): the batch's queries and a random pool of
``pool_size`` memory items are encoded with gradients, the retriever selects
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
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from relforge.components import ScoredCandidate
from relforge.data.example import Example
from relforge.engine.models import GenerativeREModel, write_meta

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


class ETRAGOptions(BaseModel):
    """``model.options`` of an ETRAG run (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid")
    #: neighbours per query; 0: the SuRE baseline (no retrieval, no prompts)
    k: int = Field(5, ge=0)
    #: memory items drawn (and encoded with gradients) per training step
    pool_size: int = Field(32, gt=0)
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
    #: seed of the per-step pool draws
    pool_seed: int = 0


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

class ETRAGModel(GenerativeREModel):
    kind = "seq2seq"

    def __init__(self, backbone, tokenizer, *, template, loss, decoder, retriever, labels, label_words,
                 no_relation, options: ETRAGOptions, span_encoder: SpanEncoder | None,
                 max_source_length: int = 256, max_target_length: int = 32) -> None:
        super().__init__(backbone, tokenizer, template=template, loss=loss, decoder=decoder, labels=labels,
                         label_words=label_words, no_relation=no_relation, max_source_length=max_source_length,
                         max_target_length=max_target_length)
        self.options, self.retriever = options, retriever
        if not hasattr(decoder, "_field"):
            raise ValueError("ETRAG scores candidates itself with the core's Trie scorer and reads the decoder's "
                             "settings: use decoder relforge.sure (branch-renormalised) or relforge.exact")
        self.span_encoder = span_encoder
        self._absolute_positions = has_absolute_positions(self.backbone.get_encoder())
        self.projection = None
        if options.k > 0:
            if span_encoder is None:
                raise ValueError("k > 0 needs a retriever encoder")
            d_model = int(self.backbone.get_input_embeddings().weight.shape[1])
            self.projection = torch.nn.Linear(span_encoder.hidden_size, d_model)
        # memory: items (texts, spans, labels, example index) and the cache
        self.memory_items: list[dict[str, Any]] = []
        self._memory_key: tuple | None = None
        self.memory_cache: torch.Tensor | None = None
        self._search: MemorySearch | None = None
        self.train_steps = 0
        self._cache_step = -1
        self._pool_gen = torch.Generator().manual_seed(options.pool_seed)
        #: the last training step's retrieval (weights, pool rows, query examples), for analysis
        self.last_retrieval: dict[str, Any] | None = None

    # ---- groups, memory ------------------------------------------------------

    def parameter_groups(self) -> dict[str, list[torch.nn.Parameter]]:
        # the groups exist (empty) with k = 0 too, so one configuration with
        # train.group_learning_rates for them serves both SuRE and ETRAG
        groups = super().parameter_groups()
        groups["retriever"] = list(self.span_encoder.parameters()) if self.span_encoder is not None else []
        groups["projection"] = list(self.projection.parameters()) if self.projection is not None else []
        return groups

    def retriever_parameters(self) -> list[torch.nn.Parameter]:
        groups = self.parameter_groups()
        return groups.get("retriever", []) + groups.get("projection", [])

    def _sep(self) -> str:
        tok = self.span_encoder.tokenizer if self.span_encoder is not None else self.tokenizer
        return tok.sep_token or tok.eos_token or "|"

    def set_memory(self, examples: Sequence[Example]) -> None:
        """Make the memory from the training examples (one item per gold target)."""
        key = tuple(ex.id for ex in examples)
        if key == self._memory_key:
            return
        if hasattr(self.template, "learn_constraints"):
            self.template.learn_constraints(examples)
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

    def _memory_example(self) -> torch.Tensor:
        return torch.tensor([it["example"] for it in self.memory_items], dtype=torch.long)

    def encode_memory(self, rows: Sequence[int]) -> torch.Tensor:
        items = [self.memory_items[r] for r in rows]
        return self.span_encoder([it["text"] for it in items],
                                 [[tuple(it["head"]), tuple(it["tail"]), tuple(it["summary"])] for it in items])

    def encode_queries(self, features: Sequence[Mapping[str, Any]]) -> torch.Tensor:
        third = (lambda f: None) if self.options.query_label_span == "end" else (lambda f: tuple(f["sentence_span"]))
        return self.span_encoder([f["source"] for f in features],
                                 [[tuple(f["head_span"]), tuple(f["tail_span"]), third(f)] for f in features])

    @torch.no_grad()
    def refresh_memory(self) -> None:
        if not self.memory_items:
            raise ValueError("the ETRAG memory is empty: call features(train_examples, training=True) or "
                             "set_memory(train_examples) first")
        was = self.span_encoder.training
        self.span_encoder.eval()
        bs = self.options.memory_batch_size
        chunks = [self.encode_memory(range(a, min(a + bs, len(self.memory_items))))
                  for a in range(0, len(self.memory_items), bs)]
        self.span_encoder.train(was)
        self.memory_cache = torch.cat(chunks).detach()
        self._search = None
        self._cache_step = self.train_steps

    # ---- data ---------------------------------------------------------------

    def features(self, examples: Sequence[Example], training: bool = True) -> list[dict[str, Any]]:
        if training and self.options.k > 0:
            self.set_memory(examples)
        elif training and hasattr(self.template, "learn_constraints"):
            self.template.learn_constraints(examples)
        out = []
        for i, ex in enumerate(examples):
            rendered, targets = self.render(ex)
            gold = sorted(ex.relations) or ([self.no_relation] if self.no_relation else [])
            for target in (targets if training else targets[:1]):
                out.append({"id": ex.id, "source": rendered.source, "target": target,
                            "candidates": rendered.candidates, "gold": gold,
                            "head_span": rendered.extra["head_span"], "tail_span": rendered.extra["tail_span"],
                            "sentence_span": rendered.extra["sentence_span"], "example": i if training else -1})
        return out

    def collate(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        batch = super().collate(features)
        batch["features"] = [dict(f) for f in features]
        batch["example"] = torch.tensor([f["example"] for f in features], dtype=torch.long)
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
        if self.options.insert == "prepend":
            return torch.cat([prompts, embeds], 1), torch.cat([ones, attention_mask], 1)
        return (torch.cat([embeds[:, :1], prompts, embeds[:, 1:]], 1),
                torch.cat([attention_mask[:, :1], ones, attention_mask[:, 1:]], 1))

    def prompt_position_ids(self, input_ids: torch.Tensor, n_prompts: int) -> torch.Tensor | None:
        """The encoder's ``position_ids`` for an input with ``n_prompts`` soft
        prompts inserted (``prompt_positions: keep``), or None: no prompts,
        ``shift``, or an encoder without absolute position embeddings."""
        if n_prompts == 0 or self.options.prompt_positions != "keep" or not self._absolute_positions:
            return None
        b, t = input_ids.shape
        tokens = torch.arange(t, device=input_ids.device)
        first = torch.zeros(n_prompts, dtype=torch.long, device=input_ids.device)
        order = [first, tokens] if self.options.insert == "prepend" else [tokens[:1], first, tokens[1:]]
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

    def _train_prompts(self, batch: Mapping[str, Any]) -> torch.Tensor | None:
        if self.options.k == 0:
            return None
        if not self.memory_items:
            raise ValueError("the ETRAG memory is empty: features(train_examples, training=True) builds it")
        query = self.encode_queries(batch["features"])
        n = len(self.memory_items)
        size = min(self.options.pool_size, n)
        pool = torch.randperm(n, generator=self._pool_gen)[:size]
        pool_vecs = self.encode_memory(pool.tolist())
        own = batch["example"]
        exclude = self._memory_example()[pool][None, :] == own[:, None]
        exclude &= (own >= 0)[:, None]
        r = self.retriever.retrieve(query, pool_vecs, self.options.k, exclude.to(query.device))
        self.last_retrieval = {"weights": r.weights.detach(), "pool": pool, "indices": pool[r.indices.cpu()],
                               "gold": [f["gold"] for f in batch["features"]]}
        return self.make_prompts(query, r.neighbours)

    def retrieve_cached(self, features: Sequence[Mapping[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(prompts, memory rows (B, k)) for inference from the cached memory."""
        self.ensure_cache()
        query = self.encode_queries(features)
        mem = self.memory_cache.to(query.device)
        k = min(self.options.k, mem.shape[0])
        if not self.options.search_candidates:
            r = self.retriever.retrieve(query, mem, k)
            return self.make_prompts(query, r.neighbours), r.indices
        if self._search is None:  # built once per refresh of the cache
            self._search = MemorySearch(self.memory_cache, self.options.memory_search)
        _, cand = self._search.search(query, self.options.search_candidates)
        neigh, rows = [], []
        for i in range(query.shape[0]):
            r = self.retriever.retrieve(query[i:i + 1], mem[cand[i]], min(k, cand.shape[1]))
            neigh.append(r.neighbours)
            rows.append(cand[i][r.indices[0]])
        return self.make_prompts(query, torch.cat(neigh)), torch.stack(rows)

    def ensure_cache(self) -> None:
        # lazily: the cache is only read at inference, so it is re-encoded when
        # read and older than refresh_every training steps (or than the last
        # step, with refresh_before_eval), never in the middle of training
        age = self.train_steps - self._cache_step
        stale = self.memory_cache is None or age >= self.options.refresh_every or (
            self.options.refresh_before_eval and age > 0)
        if stale:
            self.refresh_memory()

    # ---- training and inference -------------------------------------------

    def forward(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        if self.training:
            self.train_steps += 1
        dev = batch["input_ids"].device
        prompts = self._train_prompts(batch) if self.training else (
            self.retrieve_cached(batch["features"])[0] if self.options.k > 0 else None)
        inputs = self._encoder_inputs(batch["input_ids"], batch["attention_mask"],
                                      None if prompts is None else prompts.to(dev))
        out = self.backbone(**inputs, labels=batch["labels"])
        return self.loss_outputs(out, batch)

    @torch.no_grad()
    def rank(self, examples: Sequence[Example], batch_size: int = 32) -> list[list[ScoredCandidate]]:
        from relforge.decoding.decoders import batch_trie
        from relforge.decoding.scoring import score_trie

        was_training = self.training
        self.eval()
        dec = self.decoder.settings
        field = self.decoder._field
        exact = field == "total" or bool(getattr(dec, "exact_total", False))
        dev = next(self.backbone.parameters()).device
        rankings: list[list[ScoredCandidate]] = []
        try:
            for a in range(0, len(examples), batch_size):
                feats = self.features(examples[a:a + batch_size], training=False)
                enc = self.tokenizer([f["source"] for f in feats], padding=True, truncation=True,
                                     max_length=min(self.max_source_length, dec.max_source_length),
                                     return_tensors="pt")
                prompts = self.retrieve_cached(feats)[0] if self.options.k > 0 else None
                inputs = self._encoder_inputs(enc["input_ids"].to(dev), enc["attention_mask"].to(dev),
                                              None if prompts is None else prompts.to(dev))
                att = inputs["attention_mask"]
                hidden = self.backbone.get_encoder()(**inputs).last_hidden_state
                cands = [f["candidates"] for f in feats]
                trie, names, mask = batch_trie(self.tokenizer, cands)
                scores = score_trie(self.backbone, trie, hidden, att, mask, max_rows=dec.max_rows, exact=exact)
                value = getattr(scores, field).cpu()
                total = scores.total.cpu() if exact else None
                lengths, allowed = scores.lengths.cpu(), scores.allowed.cpu()
                for i in range(len(feats)):
                    ranked = []
                    for j in allowed[i].nonzero().flatten().tolist():
                        n = int(lengths[j])
                        v = float(value[i, j])
                        ranked.append(ScoredCandidate(label=names[trie.labels[j]],
                                                      score=v / n if dec.normalize == "mean" else v,
                                                      total_logprob=None if total is None else float(total[i, j]),
                                                      num_tokens=n))
                    ranked.sort(key=lambda c: c.score, reverse=True)
                    rankings.append(ranked)
        finally:
            self.train(was_training)
        return rankings

    # ---- saving ----------------------------------------------------------------

    def save(self, folder: Path, meta: Mapping[str, Any]) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.options.lora is not None:
            self.backbone.save_pretrained(folder / "lora")
        else:
            self.backbone.save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)
        tensors = {}
        if self.options.k > 0:
            self.span_encoder.encoder.save_pretrained(folder / "retriever", safe_serialization=True)
            self.span_encoder.tokenizer.save_pretrained(folder / "retriever")
            self.ensure_cache()
            tensors = {f"projection.{k}": v.detach().cpu().contiguous()
                       for k, v in self.projection.state_dict().items()}
            tensors["memory_cache"] = self.memory_cache.cpu().contiguous()
        if isinstance(self.loss_fn, torch.nn.Module):
            tensors.update({f"loss.{k}": v.detach().cpu().contiguous() for k, v in self.loss_fn.state_dict().items()})
        if tensors:
            save_file(tensors, folder / ETRAG_TENSORS)
        state = {"templates": self.template.templates, "constraints": self.template.constraints,
                 "memory_items": self.memory_items, "memory_key": list(self._memory_key or ()),
                 "train_steps": self.train_steps}
        (folder / ETRAG_FILE).write_text(json.dumps(state), encoding="utf-8")
        write_meta(folder, {**meta, "kind": self.kind, "labels": self.labels, "label_words": self.label_words,
                            "no_relation": self.no_relation, "etrag": ETRAG_FILE})

    def load_state(self, folder: Path) -> None:
        from safetensors.torch import load_file

        folder = Path(folder)
        state = json.loads((folder / ETRAG_FILE).read_text(encoding="utf-8"))
        self.template.templates = state["templates"]
        self.template.constraints = state["constraints"]
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
            if loss_state and isinstance(self.loss_fn, torch.nn.Module):
                self.loss_fn.load_state_dict(loss_state)
