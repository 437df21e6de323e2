"""Trie-constrained generation as a ``transformers`` ``LogitsProcessor``.

State is kept per row (batch x beams) and advanced incrementally: one Trie
transition per row per step, never a walk from the root.

Beam search reorders rows between steps and ``transformers`` does not pass
the parent beam index to logits processors. We recover it cheaply: row ``i``
at step ``t`` extends exactly one row of step ``t - 1`` of the *same example*
(its first ``t - 1`` tokens are that row's tokens), so the processor keeps the
previous step's ``input_ids`` and states, compares each row's prefix with the
``num_beams`` previous rows of its example (an integer comparison of shape
``(batch, beams, beams, t)``, vectorised; no Trie walk) and takes
``state = step(parent_state, last_token)``. Rows with identical prefixes have
identical states, so ties are harmless. When no previous step matches (first
call, or the processor reused on unrelated inputs) the state is recomputed by
walking the generated tokens, which is correct but not incremental.

The decoder prompt (decoder start token, or a decoder-only model's prompt)
precedes the Trie: its length is taken from the first call.
"""
from __future__ import annotations

import torch
from transformers import LogitsProcessor

from relforge.decoding.masking import Backend, apply_mask_
from relforge.decoding.trie import LabelTrie


class TrieLogitsProcessor(LogitsProcessor):
    """Masks every token that does not continue a (permitted) label.

    ``label_mask`` (batch, labels) bool restricts each example to a subset of
    the Trie's labels (entity-type constraints); ``num_beams`` rows belong to
    each example. ``backend`` is the masking backend (auto, torch, cupy).
    ``inplace=False`` masks a copy: ``generate`` hands greedy search's raw
    logits to the processors and also returns that very tensor with
    ``output_logits=True``, so masking in place would alter those.
    """

    def __init__(self, trie: LabelTrie, num_beams: int = 1, label_mask: torch.Tensor | None = None,
                 backend: Backend = "auto", prompt_len: int | None = None,
                 inplace: bool = True) -> None:
        self.trie = trie
        self.num_beams = num_beams
        self.label_mask = label_mask
        self.backend = backend
        self.prompt_len = prompt_len
        self.inplace = inplace
        self._label_cum: torch.Tensor | None = None
        self.reset()

    def reset(self) -> None:
        """Forget the previous step (call between unrelated generate runs)."""
        self._prev_ids: torch.Tensor | None = None
        self._prev_states: torch.Tensor | None = None
        self.fallback_walks = 0  # how often the state had to be recomputed

    def states_for(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The Trie state of every row of ``input_ids`` (and remember it)."""
        rows, cur = input_ids.shape
        if self.prompt_len is None:
            self.prompt_len = cur
        if cur <= self.prompt_len:
            states = torch.zeros(rows, dtype=torch.long, device=input_ids.device)
        else:
            states = self._advance(input_ids)
        self._prev_ids, self._prev_states = input_ids, states
        return states

    def _advance(self, input_ids: torch.Tensor) -> torch.Tensor:
        rows, cur = input_ids.shape
        prev = self._prev_ids
        if prev is not None and prev.shape == (rows, cur - 1) and prev.device == input_ids.device:
            k = self.num_beams
            b = rows // k
            prefix = input_ids[:, :-1].reshape(b, k, 1, cur - 1)
            same = (prefix == prev.reshape(b, 1, k, cur - 1)).all(-1)  # (b, k, k)
            found = same.any(-1)
            if bool(found.all()):
                parent = same.to(torch.int8).argmax(-1) + torch.arange(b, device=input_ids.device)[:, None] * k
                return self.trie.step(self._prev_states[parent.reshape(-1)], input_ids[:, -1])
        self.fallback_walks += 1
        return self.trie.walk(input_ids[:, self.prompt_len:])

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        states = self.states_for(input_ids)
        label_cum = None
        if self.label_mask is not None:
            if self._label_cum is None or self._label_cum.device != scores.device:
                self._label_cum = LabelTrie.label_cumsum(self.label_mask.to(scores.device))
            label_cum = self._label_cum
        if not self.inplace:
            scores = scores.clone()
        return apply_mask_(scores, self.trie, states, label_cum=label_cum,
                           rows_per_example=self.num_beams, backend=self.backend)
