"""The core's two registered models (``register_models`` of the ``relforge``
built-in plugin), both implementing :class:`relforge.components.REModel`.

* :class:`GenerativeREModel` (``relforge.seq2seq``): a seq2seq backbone, a
  template that renders source and target texts, a loss, and a decoder that
  ranks the candidate relations (Trie-constrained generation or exact
  scoring).
* :class:`MarkerClassifierModel` (``relforge.marker_classifier``): an encoder
  over typed entity markers; the hidden states at the two start markers,
  concatenated, feed a classifier (Zhou and Chen, 2021).
"""
from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from relforge import progress
from relforge.components import (
    Ability, BindsRelationTemplates, ClassifierBatch, Embeds, HasBackbone, HasEncoder, HasParameterGroups,
    LearnsThreshold,
    ModelOutput, ModelParts, ModelSettings, REModel, ScoredCandidate, Seq2SeqBatch, Seq2SeqOutput, Seq2SeqSettings,
)
from relforge.data.example import Example
from relforge.decoding.trie import encode_targets
from relforge.validation import InputError

META_FILE = "relforge.json"
LOSS_STATE_FILE = "loss.safetensors"


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


class GenerativeREModel(torch.nn.Module, REModel, HasParameterGroups, HasBackbone):
    """Seq2seq generation of the verbalized relation: a template renders source
    and targets, the configured loss trains, the configured decoder ranks."""

    name = "seq2seq"
    Settings = Seq2SeqSettings
    uses = frozenset({"template", "loss", "decoder"})
    needs = frozenset({"template", "loss", "decoder"})
    provides = frozenset({Ability.SEQ2SEQ, Ability.TOKEN_TARGETS, Ability.ENCODER_STATES})
    requires = {"template": frozenset({Ability.TEXT_TARGETS})}
    group_names = frozenset({"backbone", "loss"})

    def __init__(self, backbone, tokenizer, *, template, loss, decoder, labels: Sequence[str],
                 label_words: Mapping[str, str], no_relation: str | None, max_source_length: int = 256,
                 max_target_length: int = 32, decision_threshold: float | None = None,
                 settings: ModelSettings | None = None) -> None:
        super().__init__()
        self.settings = settings or type(self).Settings(max_source_length=max_source_length,
                                                         max_target_length=max_target_length)
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.template, self.loss_fn, self.decoder = template, loss, decoder
        self.labels = list(labels)
        self.label_words = {lab: label_words[lab] for lab in self.labels}
        self.no_relation = no_relation
        self.max_source_length, self.max_target_length = max_source_length, max_target_length
        self.decision_threshold = decision_threshold
        #: a learned threshold recorded with the saved model (used when no loss is loaded)
        self.saved_log_threshold: float | None = None
        #: sources cut at max_source_length since the last take_counts(); _quiet_truncation: counted, not said
        self.truncated_total = 0
        self._quiet_truncation = False
        if isinstance(loss, torch.nn.Module):  # losses with parameters (a learned threshold) train too
            self.loss_module = loss

    @classmethod
    def load_backbone(cls, settings: ModelSettings, parts: ModelParts):
        from relforge.models.backbone import load_seq2seq

        if parts.from_folder is not None:  # trained weights: the cross-attention is what training made it
            return load_seq2seq(str(parts.from_folder), special_tokens=tuple(parts.template.special_tokens))
        return load_seq2seq(settings.backbone, special_tokens=tuple(parts.template.special_tokens),
                            cross_attention_init=getattr(settings, "cross_attention_init", "random"))

    @classmethod
    def build(cls, settings: ModelSettings, parts: ModelParts) -> GenerativeREModel:
        backbone, tokenizer = cls.load_backbone(settings, parts)
        model = cls(backbone, tokenizer, template=parts.template, loss=parts.loss, decoder=parts.decoder,
                    labels=parts.labels, label_words=parts.label_words, no_relation=parts.no_relation,
                    max_source_length=settings.max_source_length, max_target_length=settings.max_target_length,
                    decision_threshold=parts.decision_threshold, settings=settings)
        if parts.from_folder is not None:
            model.load_common_state(Path(parts.from_folder))
        return model

    def parameter_groups(self) -> dict[str, list[torch.nn.Parameter]]:
        groups = {"backbone": list(self.backbone.parameters())}
        groups["loss"] = list(self.loss_fn.parameters()) if isinstance(self.loss_fn, torch.nn.Module) else []
        return groups

    # ---- data ----------------------------------------------------------

    def render(self, example: Example):
        rendered = self.template.render(example, self.label_words)
        targets = rendered.targets
        if not targets:
            if self.no_relation is None:
                raise ValueError(f"example {example.id} has no relation and the label space has no "
                                 f"no-relation label")
            targets = [rendered.candidates[self.no_relation]]
        return rendered, targets

    def features(self, examples: Sequence[Example], training: bool = True) -> list[dict[str, Any]]:
        """One feature per (example, gold target) when training, so that a
        pair with two relations teaches both; one per example otherwise."""
        if training:
            self.template.fit(examples)
        out = []
        for i, ex in enumerate(examples):
            rendered, targets = self.render(ex)
            gold = sorted(ex.relations) or ([self.no_relation] if self.no_relation else [])
            for target in (targets if training else targets[:1]):
                out.append({"id": ex.id, "source": rendered.source, "target": target,
                            "candidates": rendered.candidates, "gold": gold, "extra": rendered.extra,
                            "example": i if training else -1})
        self.say_truncated(self.count_truncated([f["source"] for f in out]), "training" if training else "scoring")
        return out

    def count_truncated(self, sources: Sequence[str]) -> int:
        """How many distinct ``sources`` are longer than ``max_source_length``
        (their end is cut when encoded: template text after the sentence,
        entity mentions past the cut); added to ``truncated_total``."""
        lengths = self.tokenizer(list(dict.fromkeys(sources)), add_special_tokens=True)["input_ids"]
        long = sum(1 for ids in lengths if len(ids) > self.max_source_length)
        self.truncated_total += long
        return long

    def say_truncated(self, count: int, what: str) -> None:
        if count and not self._quiet_truncation:
            print(f"{type(self).name}: {count} source(s) longer than max_source_length ({self.max_source_length} "
                  f"tokens) are cut at that length ({what}); raise model.max_source_length to keep them whole")

    def collate(self, features: Sequence[Mapping[str, Any]]) -> Seq2SeqBatch:
        enc = self.tokenizer([f["source"] for f in features], padding=True, truncation=True,
                             max_length=self.max_source_length, return_tensors="pt")
        ids = encode_targets(self.tokenizer, {str(i): f["target"] for i, f in enumerate(features)})
        seqs = [ids[str(i)][: self.max_target_length] for i in range(len(features))]
        width = max(len(s) for s in seqs)
        labels = torch.full((len(seqs), width), -100, dtype=torch.long)
        for i, s in enumerate(seqs):
            labels[i, : len(s)] = torch.tensor(s)
        return Seq2SeqBatch(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                            gold=[list(f["gold"]) for f in features], ids=[f["id"] for f in features],
                            labels=labels, sources=[f["source"] for f in features],
                            candidates=[f["candidates"] for f in features],
                            rows=[{"extra": f.get("extra", {}), "example": f.get("example", -1)} for f in features])

    # ---- training and inference -------------------------------------

    def forward(self, batch: Seq2SeqBatch) -> Seq2SeqOutput:
        out = self.backbone(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels)
        return self.with_loss(out, batch, batch.attention_mask)

    def with_loss(self, backbone_output: Any, batch: Seq2SeqBatch, attention_mask: torch.Tensor) -> Seq2SeqOutput:
        """The typed outputs of a backbone pass, with the configured loss;
        ``attention_mask`` is the encoder mask the pass really used."""
        outputs = Seq2SeqOutput(logits=backbone_output.logits,
                                encoder_hidden=backbone_output.encoder_last_hidden_state,
                                attention_mask=attention_mask, model=self)
        if self.loss_fn is None:
            raise RuntimeError("this model was loaded for inference (no loss was built): it cannot train")
        outputs.loss = self.loss_fn(outputs, batch)
        return outputs

    def restrict(self, candidates: Mapping[str, str], labels: Sequence[str] | None) -> dict[str, str]:
        return dict(candidates) if labels is None else {k: v for k, v in candidates.items() if k in labels}

    def check_labels(self, labels: Sequence[str] | None) -> None:
        if labels is not None:
            missing = [lab for lab in labels if lab not in self.label_words]
            if missing:
                raise KeyError(f"no verbalized words for {missing}: the model knows {sorted(self.label_words)}")

    @torch.no_grad()
    def rank(self, examples: Sequence[Example], batch_size: int = 32,
             labels: Sequence[str] | None = None) -> list[list[ScoredCandidate]]:
        """Candidates ranked per example; ``labels`` restricts the candidates
        (an N-way episode) and may name labels outside the training set
        (their words come from the verbalizer the model was built with)."""
        was_training = self.training
        self.eval()
        self.check_labels(labels)
        rankings: list[list[ScoredCandidate]] = []
        cut = 0
        try:
            for part in progress.batches(examples, batch_size):
                chunk = [self.template.render(ex, self.label_words) for ex in part]
                cut += self.count_truncated([r.source for r in chunk])
                candidates = [self.restrict(r.candidates, labels) for r in chunk]
                rankings += self.decoder.rank(self.backbone, self.tokenizer, [r.source for r in chunk], candidates)
        finally:
            self.train(was_training)
        self.say_truncated(cut, "scoring")
        return self.shift_scores(rankings)

    def take_counts(self) -> dict[str, float]:
        total, self.truncated_total = self.truncated_total, 0
        return {"truncated_sources": float(total)} if total else {}

    # ---- a learned threshold -------------------------------------------

    def learned_log_threshold(self) -> float | None:
        if isinstance(self.loss_fn, LearnsThreshold):
            return self.loss_fn.learned_log_threshold()
        return self.saved_log_threshold

    def shift_scores(self, rankings: list[list[ScoredCandidate]]) -> list[list[ScoredCandidate]]:
        """With a loss that learns the threshold and a threshold decision,
        every score moves by ``log(decision.threshold) - learned``: a
        candidate then passes the configured threshold exactly when its score
        passes the learned one, so the core's decision applies it unchanged."""
        learned = self.learned_log_threshold()
        if learned is None or self.decision_threshold is None:
            return rankings
        shift = math.log(self.decision_threshold) - learned
        if shift == 0.0:
            return rankings
        return [[dataclasses.replace(c, score=c.score + shift) for c in r] for r in rankings]

    # ---- saving and loading ------------------------------------------------

    def common_meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"model": type(self).name, "labels": self.labels, "label_words": self.label_words,
                                "no_relation": self.no_relation}
        if isinstance(self.template, BindsRelationTemplates):
            meta["template_state"] = self.template.template_state()
        learned = self.learned_log_threshold()
        if learned is not None:
            meta["learned_log_threshold"] = learned
        return meta

    def save_loss_state(self, folder: Path) -> None:
        if isinstance(self.loss_fn, torch.nn.Module) and list(self.loss_fn.parameters()):
            from safetensors.torch import save_file

            save_file({k: v.detach().cpu().contiguous() for k, v in self.loss_fn.state_dict().items()},
                      folder / LOSS_STATE_FILE)

    def load_common_state(self, folder: Path) -> None:
        """The template state, the learned threshold and (when a loss is
        built, to resume training) the loss's parameters of a saved folder."""
        meta = read_meta(folder)
        if isinstance(self.template, BindsRelationTemplates) and "template_state" in meta:
            self.template.load_template_state(meta["template_state"])
        self.saved_log_threshold = meta.get("learned_log_threshold")
        if isinstance(self.loss_fn, torch.nn.Module) and (folder / LOSS_STATE_FILE).exists():
            from safetensors.torch import load_file

            self.loss_fn.load_state_dict(load_file(folder / LOSS_STATE_FILE))

    def save(self, folder: Path, meta: Mapping[str, Any]) -> None:
        folder = Path(folder)
        self.backbone.save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)
        self.save_loss_state(folder)
        write_meta(folder, {**meta, **self.common_meta()})


class MarkerClassifierSettings(ModelSettings):
    dropout: float = Field(0.1, ge=0, lt=1)
    #: a source longer than max_source_length: "window" keeps both entity
    #: markers by cutting the text around the pair (two windows joined by
    #: " ... " when the entities are further apart than the length), counted
    #: and reported; "error" refuses such an example. No example is ever
    #: scored from a position that is not its marker.
    truncation: Literal["window", "error"] = "window"


class MarkerClassifierModel(torch.nn.Module, REModel, Embeds, HasParameterGroups, HasEncoder):
    """Typed entity markers + classifier (Zhou and Chen, 2021): the two start
    markers' states, concatenated, through a two-layer head."""

    name = "marker_classifier"
    Settings = MarkerClassifierSettings
    uses = frozenset({"template", "loss"})
    needs = frozenset({"template", "loss"})
    provides = frozenset({Ability.CLASS_LOGITS, Ability.PRETRAINABLE_ENCODER})
    requires = {"template": frozenset({Ability.MARKER_OFFSETS})}
    group_names = frozenset({"backbone", "head"})

    def __init__(self, encoder, tokenizer, *, template, loss, labels: Sequence[str], no_relation: str | None,
                 max_source_length: int = 256, dropout: float = 0.1, label_words: Mapping[str, str] | None = None,
                 multi_label: bool | None = None, settings: MarkerClassifierSettings | None = None) -> None:
        super().__init__()
        self.settings = settings or MarkerClassifierSettings(max_source_length=max_source_length, dropout=dropout)
        self.encoder, self.tokenizer = encoder, tokenizer
        self.template, self.loss_fn = template, loss
        self.labels = list(labels)
        self.label_index = {lab: i for i, lab in enumerate(self.labels)}
        self.label_words = dict(label_words or {lab: lab for lab in self.labels})
        self.no_relation = no_relation
        self.max_source_length = max_source_length
        self.multi_label = bool(loss.multi_label) if loss is not None and multi_label is None else bool(multi_label)
        #: ids of the examples windowed since the last report; and the running total
        self.windowed: set[str] = set()
        self.windowed_total = 0
        hidden = encoder.config.hidden_size
        self.dropout = torch.nn.Dropout(dropout)
        self.classifier = torch.nn.Sequential(torch.nn.Linear(2 * hidden, hidden), torch.nn.Tanh(),
                                              torch.nn.Linear(hidden, len(self.labels)))

    @classmethod
    def build(cls, settings: MarkerClassifierSettings, parts: ModelParts) -> MarkerClassifierModel:
        from relforge.models.encoder import load_encoder

        folder = Path(parts.from_folder) if parts.from_folder is not None else None
        encoder, tokenizer = load_encoder(str(folder) if folder else settings.backbone)
        multi = read_meta(folder).get("multi_label", False) if folder and parts.loss is None else None
        model = cls(encoder, tokenizer, template=parts.template, loss=parts.loss, labels=parts.labels,
                    no_relation=parts.no_relation, label_words=parts.label_words,
                    max_source_length=settings.max_source_length, dropout=settings.dropout, multi_label=multi,
                    settings=settings)
        if folder is not None:
            from safetensors.torch import load_file

            model.classifier.load_state_dict(load_file(folder / "classifier.safetensors"))
        return model

    def parameter_groups(self) -> dict[str, list[torch.nn.Parameter]]:
        return {"backbone": list(self.encoder.parameters()), "head": list(self.classifier.parameters())}

    def features(self, examples: Sequence[Example], training: bool = True) -> list[dict[str, Any]]:
        if training:
            self.template.fit(examples)
        out = []
        for ex in examples:
            r = self.template.render(ex, self.label_words)
            unknown = [lab for lab in ex.relations if lab not in self.label_index]
            if unknown:
                raise KeyError(f"example {ex.id}: relation(s) {sorted(unknown)} are not in the label space")
            gold = sorted(ex.relations) or ([self.no_relation] if self.no_relation else [])
            out.append({"id": ex.id, **self.fit_window(ex.id, r.source, r.extra["head_start"],
                                                       r.extra["tail_start"]), "gold": gold})
        self.report_windows("training" if training else "scoring")
        return out

    def collate(self, features: Sequence[Mapping[str, Any]]) -> ClassifierBatch:
        enc = self.tokenizer([f["source"] for f in features], padding=True, truncation=True,
                             max_length=self.max_source_length, return_tensors="pt", return_offsets_mapping=True)
        offsets = enc.pop("offset_mapping")
        positions = torch.zeros(len(features), 2, dtype=torch.long)
        for i, f in enumerate(features):
            starts = offsets[i, :, 0].tolist()
            ends = offsets[i, :, 1].tolist()
            for j, key in enumerate(("head_start", "tail_start")):
                # the token that begins at the marker's character (fit_window keeps it in the encoded length)
                found = next((t for t, (a, b) in enumerate(zip(starts, ends)) if a == f[key] and b > a), None)
                if found is None:
                    raise ValueError(f"example {f.get('id', i)}: no token starts at its {key.split('_')[0]} marker "
                                     f"(character {f[key]}) in the encoded source; it cannot be scored")
                positions[i, j] = found
        label_ids = torch.tensor([self.label_index[f["gold"][0]] if f["gold"] else 0 for f in features])
        targets = torch.zeros(len(features), len(self.labels))
        for i, f in enumerate(features):
            for lab in f["gold"]:
                targets[i, self.label_index[lab]] = 1.0
        return ClassifierBatch(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                               gold=[list(f["gold"]) for f in features], ids=[f.get("id", "") for f in features],
                               positions=positions, label_ids=label_ids, label_targets=targets)

    def pair_vectors(self, batch: ClassifierBatch) -> torch.Tensor:
        """The two start-marker states, concatenated: the pair's representation."""
        hidden = self.encoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return torch.cat([hidden[rows, batch.positions[:, 0]], hidden[rows, batch.positions[:, 1]]], dim=-1)

    def logits(self, batch: ClassifierBatch) -> torch.Tensor:
        return self.classifier(self.dropout(self.pair_vectors(batch)))

    def _render_features(self, examples: Sequence[Example]) -> list[dict[str, Any]]:
        return [{**self.fit_window(ex.id, r.source, r.extra["head_start"], r.extra["tail_start"]), "gold": []}
                for ex, r in ((ex, self.template.render(ex, self.label_words)) for ex in examples)]

    # ---- sources longer than max_source_length ------------------------------

    def fit_window(self, example_id: str, source: str, head: int, tail: int) -> dict[str, Any]:
        """The source (and marker offsets) to encode: unchanged when it fits,
        else a window that keeps both markers (counted in ``windowed``)."""
        fitted = window_around(self.tokenizer, source, [head, tail], self.max_source_length)
        if fitted is None:
            return {"source": source, "head_start": head, "tail_start": tail}
        if self.settings.truncation == "error":
            raise ValueError(f"example {example_id}: its source is longer than model.max_source_length "
                             f"({self.max_source_length} tokens) and would lose an entity marker; raise the "
                             f"length, or set model.truncation=window to encode a window around the pair")
        text, (h, t) = fitted
        self.windowed.add(example_id)
        return {"source": text, "head_start": h, "tail_start": t}

    def take_counts(self) -> dict[str, float]:
        self.report_windows("scoring")
        total, self.windowed_total = self.windowed_total, 0
        return {"windowed_examples": float(total)} if total else {}

    def report_windows(self, what: str) -> None:
        """One line when examples were windowed since the last report."""
        if self.windowed:
            print(f"{type(self).name}: {len(self.windowed)} example(s) longer than max_source_length "
                  f"({self.max_source_length} tokens) encoded as a window around their entity pair ({what})")
            self.windowed_total += len(self.windowed)
            self.windowed.clear()

    @torch.no_grad()
    def embed(self, examples: Sequence[Example], batch_size: int = 32) -> torch.Tensor:
        """Pair vectors of ``examples`` (any labels, seen in training or not):
        what episodic evaluation builds prototypes from."""
        was_training = self.training
        self.eval()
        out = []
        try:
            for part in progress.batches(examples, batch_size):
                batch = self.collate(self._render_features(part)).to(model_device(self))
                out.append(self.pair_vectors(batch).float().cpu())
        finally:
            self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, 2 * self.encoder.config.hidden_size)

    def forward(self, batch: ClassifierBatch) -> ModelOutput:
        outputs = ModelOutput(logits=self.logits(batch))
        if self.loss_fn is None:
            raise RuntimeError("this model was loaded for inference (no loss was built): it cannot train")
        outputs.loss = self.loss_fn(outputs, batch)
        return outputs

    @torch.no_grad()
    def rank(self, examples: Sequence[Example], batch_size: int = 32,
             labels: Sequence[str] | None = None) -> list[list[ScoredCandidate]]:
        """Every label ranked by its log-probability (log-sigmoid for a
        multi-label loss); ``labels`` keeps only those (they must be labels
        the classifier was trained on: it has no output for others)."""
        if labels is not None:
            unknown = [lab for lab in labels if lab not in self.label_index]
            if unknown:
                raise KeyError(f"the classifier has no output for {unknown}: it was trained on {self.labels}; "
                               f"episodes with new relations use its pair vectors (prototypes)")
        keep = None if labels is None else set(labels)
        was_training = self.training
        self.eval()
        out: list[list[ScoredCandidate]] = []
        try:
            for part in progress.batches(examples, batch_size):
                batch = self.collate(self._render_features(part)).to(model_device(self))
                logits = self.logits(batch).float()
                scores = F.logsigmoid(logits) if self.multi_label else logits.log_softmax(-1)
                for row in scores.tolist():
                    ranked = sorted(((lab, s) for lab, s in zip(self.labels, row) if keep is None or lab in keep),
                                    key=lambda x: x[1], reverse=True)
                    out.append([ScoredCandidate(lab, s, s, 1) for lab, s in ranked])
        finally:
            self.train(was_training)
        return out

    def save(self, folder: Path, meta: Mapping[str, Any]) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        self.encoder.save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)
        save_file({k: v.contiguous() for k, v in self.classifier.state_dict().items()},
                  folder / "classifier.safetensors")
        write_meta(folder, {**meta, "model": type(self).name, "labels": self.labels,
                            "label_words": self.label_words, "no_relation": self.no_relation,
                            "multi_label": self.multi_label})


def write_meta(folder: Path, meta: Mapping[str, Any]) -> None:
    (Path(folder) / META_FILE).write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")


def read_meta(folder: Path) -> dict[str, Any]:
    path = Path(folder) / META_FILE
    if not path.exists():
        raise FileNotFoundError(f"{folder} is not a RelForge model folder: {META_FILE} is missing "
                                f"(expected the `best/` or `model/` folder of a `relforge train` run)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc}); the model folder is damaged -- re-save it from its "
                         f"run or train again") from None


def window_around(tokenizer: Any, text: str, anchors: Sequence[int], max_tokens: int,
                  separator: str = " ... ") -> tuple[str, list[int]] | None:
    """A shorter ``text`` that keeps every anchor character (entity markers)
    within ``max_tokens`` tokens (special tokens included), with the anchors'
    new offsets; None when ``text`` already fits. The window is centred on
    the anchors; anchors further apart than the budget get a window each,
    joined by ``separator``."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    budget = max_tokens - tokenizer.num_special_tokens_to_add(pair=False)
    if len(offsets) <= budget:
        return None
    budget = max(4, budget - 4)  # slack: re-tokenizing a cut text can split its edges differently

    def token_of(ch: int) -> int:
        return next((t for t, (a, b) in enumerate(offsets) if a <= ch < b or a == ch), len(offsets) - 1)

    order = sorted(range(len(anchors)), key=lambda i: anchors[i])
    toks = [token_of(anchors[i]) for i in order]

    def span(lo: int, hi: int, size: int) -> tuple[int, int]:
        extra = max(0, size - (hi - lo + 1))
        start = max(0, lo - extra // 2)
        end = min(len(offsets), start + max(size, hi - lo + 1))
        return max(0, end - max(size, hi - lo + 1)), end

    if toks[-1] - toks[0] + 1 <= budget:
        pieces = [span(toks[0], toks[-1], budget)]
        groups = [order]
    else:
        half = max(2, (budget - 2) // 2)
        pieces = [span(toks[0], toks[0], half), span(toks[-1], toks[-1], half)]
        groups = [order[:1], order[1:]]
    new_text, new_anchors = "", [0] * len(anchors)
    for n, ((a, b), members) in enumerate(zip(pieces, groups)):
        cs, ce = offsets[a][0], offsets[b - 1][1]
        if n:
            new_text += separator
        base = len(new_text) - cs
        new_text += text[cs:ce]
        for i in members:
            new_anchors[i] = anchors[i] + base
    return new_text, new_anchors
