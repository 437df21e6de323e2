"""The engine's two model families, both trainable by :class:`Trainer`.

* :class:`GenerativeREModel`: a seq2seq backbone, a template that renders
  source and target texts, a loss, and a decoder that ranks the candidate
  relations (Trie-constrained generation or exact scoring).
* :class:`MarkerClassifierModel`: an encoder over typed entity markers; the
  hidden states at the two start markers, concatenated, feed a linear
  classifier (Zhou and Chen, 2021).

Both take a list of :class:`~relforge.data.example.Example`, turn it into
features (``features``), batch them (``collate``), compute the loss
(``forward``) and rank candidates (``rank``).
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from relforge.components import ScoredCandidate
from relforge.data.example import Example
from relforge.decoding.trie import encode_targets

META_FILE = "relforge.json"


class GenerativeREModel(torch.nn.Module):
    kind = "seq2seq"

    def __init__(self, backbone, tokenizer, *, template, loss, decoder, labels: Sequence[str],
                 label_words: Mapping[str, str], no_relation: str | None, max_source_length: int = 256,
                 max_target_length: int = 32) -> None:
        super().__init__()
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.template, self.loss_fn, self.decoder = template, loss, decoder
        self.labels = list(labels)
        self.label_words = {lab: label_words[lab] for lab in self.labels}
        self.no_relation = no_relation
        self.max_source_length, self.max_target_length = max_source_length, max_target_length
        if isinstance(loss, torch.nn.Module):  # losses with parameters (a learned threshold) train too
            self.loss_module = loss

    def parameter_groups(self) -> dict[str, list[torch.nn.Parameter]]:
        groups = {"backbone": list(self.backbone.parameters())}
        if isinstance(self.loss_fn, torch.nn.Module):
            groups["loss"] = list(self.loss_fn.parameters())
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
        out = []
        for ex in examples:
            rendered, targets = self.render(ex)
            gold = sorted(ex.relations) or ([self.no_relation] if self.no_relation else [])
            for target in (targets if training else targets[:1]):
                out.append({"id": ex.id, "source": rendered.source, "target": target,
                            "candidates": rendered.candidates, "gold": gold})
        return out

    def collate(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        enc = self.tokenizer([f["source"] for f in features], padding=True, truncation=True,
                             max_length=self.max_source_length, return_tensors="pt")
        ids = encode_targets(self.tokenizer, {str(i): f["target"] for i, f in enumerate(features)})
        seqs = [ids[str(i)][: self.max_target_length] for i in range(len(features))]
        width = max(len(s) for s in seqs)
        labels = torch.full((len(seqs), width), -100, dtype=torch.long)
        for i, s in enumerate(seqs):
            labels[i, : len(s)] = torch.tensor(s)
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels,
                "sources": [f["source"] for f in features], "candidates": [f["candidates"] for f in features],
                "gold": [f["gold"] for f in features]}

    # ---- training and inference -------------------------------------

    def forward(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        out = self.backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                            labels=batch["labels"])
        return self.loss_outputs(out, batch)

    def loss_outputs(self, backbone_output: Any, batch: Mapping[str, Any]) -> dict[str, Any]:
        """The configured loss on a backbone pass; subclasses that build the
        encoder input differently (soft prompts) end their ``forward`` here."""
        outputs = {"logits": backbone_output.logits, "model": self, "backbone_output": backbone_output}
        return {"loss": self.loss_fn(outputs, batch), "logits": backbone_output.logits}

    @torch.no_grad()
    def rank(self, examples: Sequence[Example], batch_size: int = 32,
             labels: Sequence[str] | None = None) -> list[list[ScoredCandidate]]:
        """Candidates ranked per example; ``labels`` restricts the candidates
        (an N-way episode) and may name labels outside the training set
        (their words come from the verbalizer the model was built with)."""
        was_training = self.training
        self.eval()
        if labels is not None:
            missing = [lab for lab in labels if lab not in self.label_words]
            if missing:
                raise KeyError(f"no verbalized words for {missing}: the model knows {sorted(self.label_words)}")
        rankings: list[list[ScoredCandidate]] = []
        for i in range(0, len(examples), batch_size):
            chunk = [self.template.render(ex, self.label_words) for ex in examples[i:i + batch_size]]
            candidates = [r.candidates if labels is None else {k: v for k, v in r.candidates.items() if k in labels}
                          for r in chunk]
            rankings += self.decoder.rank(self.backbone, self.tokenizer, [r.source for r in chunk], candidates)
        self.train(was_training)
        return rankings

    def save(self, folder: Path, meta: Mapping[str, Any]) -> None:
        folder = Path(folder)
        self.backbone.save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)
        extra = {}
        if isinstance(self.loss_fn, torch.nn.Module) and list(self.loss_fn.parameters()):
            from safetensors.torch import save_file

            save_file({k: v.detach().cpu().contiguous() for k, v in self.loss_fn.state_dict().items()},
                      folder / "loss.safetensors")
            extra["loss_state"] = "loss.safetensors"
        write_meta(folder, {**meta, "kind": self.kind, "labels": self.labels, "label_words": self.label_words,
                            "no_relation": self.no_relation, **extra})


class MarkerClassifierModel(torch.nn.Module):
    kind = "encoder"

    def __init__(self, encoder, tokenizer, *, template, loss, labels: Sequence[str], no_relation: str | None,
                 max_source_length: int = 256, dropout: float = 0.1, label_words: Mapping[str, str] | None = None,
                 ) -> None:
        super().__init__()
        self.encoder, self.tokenizer = encoder, tokenizer
        self.template, self.loss_fn = template, loss
        self.labels = list(labels)
        self.label_index = {lab: i for i, lab in enumerate(self.labels)}
        self.label_words = dict(label_words or {lab: lab for lab in self.labels})
        self.no_relation = no_relation
        self.max_source_length = max_source_length
        hidden = encoder.config.hidden_size
        self.dropout = torch.nn.Dropout(dropout)
        self.classifier = torch.nn.Sequential(torch.nn.Linear(2 * hidden, hidden), torch.nn.Tanh(),
                                              torch.nn.Linear(hidden, len(self.labels)))

    def parameter_groups(self) -> dict[str, list[torch.nn.Parameter]]:
        return {"backbone": list(self.encoder.parameters()), "head": list(self.classifier.parameters())}

    def features(self, examples: Sequence[Example], training: bool = True) -> list[dict[str, Any]]:
        out = []
        for ex in examples:
            r = self.template.render(ex, self.label_words)
            unknown = [lab for lab in ex.relations if lab not in self.label_index]
            if unknown:
                raise KeyError(f"example {ex.id}: relation(s) {sorted(unknown)} are not in the label space")
            gold = sorted(ex.relations) or ([self.no_relation] if self.no_relation else [])
            out.append({"id": ex.id, "source": r.source, "head_start": r.extra["head_start"],
                        "tail_start": r.extra["tail_start"], "gold": gold})
        return out

    def collate(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        enc = self.tokenizer([f["source"] for f in features], padding=True, truncation=True,
                             max_length=self.max_source_length, return_tensors="pt", return_offsets_mapping=True)
        offsets = enc.pop("offset_mapping")
        positions = torch.zeros(len(features), 2, dtype=torch.long)
        for i, f in enumerate(features):
            starts = offsets[i, :, 0].tolist()
            ends = offsets[i, :, 1].tolist()
            for j, key in enumerate(("head_start", "tail_start")):
                # the token that begins at the marker's character; 0 ([CLS]) if truncated away
                positions[i, j] = next((t for t, (a, b) in enumerate(zip(starts, ends))
                                        if a == f[key] and b > a), 0)
        label_ids = torch.tensor([self.label_index[f["gold"][0]] if f["gold"] else 0 for f in features])
        targets = torch.zeros(len(features), len(self.labels))
        for i, f in enumerate(features):
            for lab in f["gold"]:
                targets[i, self.label_index[lab]] = 1.0
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "positions": positions,
                "label_ids": label_ids, "label_targets": targets, "gold": [f["gold"] for f in features]}

    def pair_vectors(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """The two start-marker states, concatenated: the pair's representation."""
        hidden = self.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return torch.cat([hidden[rows, batch["positions"][:, 0]], hidden[rows, batch["positions"][:, 1]]], dim=-1)

    def logits(self, batch: Mapping[str, Any]) -> torch.Tensor:
        return self.classifier(self.dropout(self.pair_vectors(batch)))

    @torch.no_grad()
    def embed(self, examples: Sequence[Example], batch_size: int = 32) -> torch.Tensor:
        """Pair vectors of ``examples`` (any labels, seen in training or not):
        what episodic evaluation builds prototypes from."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        out = []
        for i in range(0, len(examples), batch_size):
            feats = [{"source": r.source, "head_start": r.extra["head_start"], "tail_start": r.extra["tail_start"],
                      "gold": []} for r in (self.template.render(ex, self.label_words)
                                            for ex in examples[i:i + batch_size])]
            batch = self.collate(feats)
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            out.append(self.pair_vectors(batch).float().cpu())
        self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, 2 * self.encoder.config.hidden_size)

    def forward(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        logits = self.logits(batch)
        return {"loss": self.loss_fn({"logits": logits}, batch), "logits": logits}

    @torch.no_grad()
    def rank(self, examples: Sequence[Example], batch_size: int = 32) -> list[list[ScoredCandidate]]:
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        multi = bool(getattr(self.loss_fn.settings, "multi_label", False))
        out: list[list[ScoredCandidate]] = []
        for i in range(0, len(examples), batch_size):
            batch = self.collate(self.features(examples[i:i + batch_size], training=False))
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            logits = self.logits(batch).float()
            scores = F.logsigmoid(logits) if multi else logits.log_softmax(-1)
            for row in scores.tolist():
                ranked = sorted(zip(self.labels, row), key=lambda x: x[1], reverse=True)
                out.append([ScoredCandidate(lab, s, s, 1) for lab, s in ranked])
        self.train(was_training)
        return out

    def save(self, folder: Path, meta: Mapping[str, Any]) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        self.encoder.save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)
        save_file({k: v.contiguous() for k, v in self.classifier.state_dict().items()},
                  folder / "classifier.safetensors")
        write_meta(folder, {**meta, "kind": self.kind, "labels": self.labels, "label_words": self.label_words,
                            "no_relation": self.no_relation})


def write_meta(folder: Path, meta: Mapping[str, Any]) -> None:
    (Path(folder) / META_FILE).write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")


def read_meta(folder: Path) -> dict[str, Any]:
    path = Path(folder) / META_FILE
    if not path.exists():
        raise FileNotFoundError(f"{folder} is not a RelForge model folder: {META_FILE} is missing "
                                f"(expected the `best/` or `model/` folder of a `relforge train` run)")
    return json.loads(path.read_text(encoding="utf-8"))
