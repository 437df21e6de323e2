"""The core's generic losses (registered by the ``relforge`` built-in plugin)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from relforge.components import Ability, ClassifierBatch, Loss, ModelOutput, Seq2SeqBatch, Settings


class TokenCrossEntropy(Loss):
    """Token cross-entropy of a generated target, with optional label smoothing;
    label -100 is ignored. Uses ``outputs.logits`` (B, T, V) and ``batch.labels`` (B, T)."""

    name = "cross_entropy"
    requires = {"model": frozenset({Ability.TOKEN_TARGETS})}

    class Settings(Settings):
        label_smoothing: float = Field(0.0, ge=0, lt=1)

    def __call__(self, outputs: ModelOutput, batch: Seq2SeqBatch) -> torch.Tensor:
        logits, labels = outputs.logits, batch.labels
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                               ignore_index=-100, label_smoothing=self.settings.label_smoothing)


class ClassificationCrossEntropy(Loss):
    """Cross-entropy over relation classes (``outputs.logits`` (B, C),
    ``batch.label_ids`` (B,)); with ``multi_label``, binary cross-entropy
    against ``batch.label_targets`` (B, C), where the no-relation class is
    on exactly when no other class is."""

    name = "classification_ce"
    requires = {"model": frozenset({Ability.CLASS_LOGITS})}

    class Settings(Settings):
        multi_label: bool = False
        label_smoothing: float = Field(0.0, ge=0, lt=1)

    @property
    def multi_label(self) -> bool:
        return bool(self.settings.multi_label)

    def __call__(self, outputs: ModelOutput, batch: ClassifierBatch) -> torch.Tensor:
        logits = outputs.logits.float()
        if self.settings.multi_label:
            return F.binary_cross_entropy_with_logits(logits, batch.label_targets.float())
        return F.cross_entropy(logits, batch.label_ids, label_smoothing=self.settings.label_smoothing)
