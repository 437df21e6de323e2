"""Constrained decoding: the label Trie, batched masking and candidate scoring.

Public API (imported lazily, so ``import relforge.decoding`` stays cheap):

* :class:`LabelTrie`, :func:`encode_targets` (``trie``)
* :func:`apply_mask_`, :func:`allowed_mask` (``masking``; torch or CuPy backend)
* :class:`TrieLogitsProcessor` (``processor``; for ``transformers`` ``generate``)
* :func:`score_trie`, :class:`TrieScores` (``scoring``; exact and SuRE-style scores)
* the decoders ``trie-beam``, ``exact`` and ``sure`` (``decoders``), registered
  through the ``register_decoders`` hook, and their base :class:`BatchedDecoder`
  (batching and eval mode) for decoders that plugins write.
"""
from __future__ import annotations

import importlib

_WHERE = {
    "LabelTrie": "trie", "encode_targets": "trie",
    "apply_mask_": "masking", "allowed_mask": "masking",
    "TrieLogitsProcessor": "processor",
    "score_trie": "scoring", "TrieScores": "scoring",
    "ConstrainedGenerationDecoder": "decoders", "ExactScoringDecoder": "decoders",
    "SureScoringDecoder": "decoders", "BatchedDecoder": "decoders",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
