"""Batched Trie masking: every row's allowed tokens in one vectorised step.

Two interchangeable backends with identical results:

* ``"torch"`` (CPU and GPU): gather the row's edges as a (rows, max_degree)
  block, save the allowed scores, fill the rows with -inf, put the saved
  scores back with ``scatter_reduce(amax)`` (padding entries carry -inf, so
  duplicate indices cannot clobber an allowed value). One write pass over the
  scores and no per-row Python.
* ``"cupy"`` (CUDA): the kernel in ``trie_mask.cu``, see
  :mod:`relforge.decoding.cupy_backend`.

``backend="auto"`` picks CuPy for CUDA tensors when CuPy imports and torch
otherwise; configuration can force either.
"""
from __future__ import annotations

from typing import Literal

import torch

from relforge.decoding.trie import LabelTrie

Backend = Literal["auto", "torch", "cupy"]


def resolve_backend(backend: str, device: torch.device) -> str:
    """The backend that will actually run for tensors on ``device``."""
    if backend not in ("auto", "torch", "cupy"):
        raise ValueError(f"unknown masking backend {backend!r} (auto, torch or cupy)")
    if backend == "auto":
        if device.type == "cuda":
            from relforge.decoding import cupy_backend

            return "cupy" if cupy_backend.available() else "torch"
        return "torch"
    if backend == "cupy" and device.type != "cuda":
        raise ValueError("the cupy masking backend needs CUDA tensors")
    return backend


def _row_edges(trie: LabelTrie, states: torch.Tensor, label_cum: torch.Tensor | None,
               rows_per_example: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, max_degree) edge tokens and validity of each row's state."""
    arr = trie.arrays(states.device)
    start = arr.indptr[states]
    deg = arr.indptr[states + 1] - start
    offs = torch.arange(arr.max_degree, device=states.device)
    valid = offs < deg[:, None]
    edge = torch.where(valid, start[:, None] + offs, 0)
    tok = arr.edge_token[edge]
    if label_cum is not None:
        lo, hi = arr.edge_lo[edge], arr.edge_hi[edge]
        ex = torch.arange(states.numel(), device=states.device) // rows_per_example
        cum = label_cum[ex].to(torch.long)
        reach = cum.gather(1, hi.clamp(min=0)) - cum.gather(1, lo.clamp(min=0))
        valid = valid & ((lo < 0) | (reach > 0))
    return tok, valid


def apply_mask_torch_(scores: torch.Tensor, trie: LabelTrie, states: torch.Tensor,
                      label_cum: torch.Tensor | None = None, rows_per_example: int = 1) -> torch.Tensor:
    tok, valid = _row_edges(trie, states, label_cum, rows_per_example)
    neg_inf = torch.tensor(float("-inf"), dtype=scores.dtype, device=scores.device)
    kept = torch.where(valid, scores.gather(1, tok), neg_inf)
    scores.fill_(float("-inf"))
    scores.scatter_reduce_(1, tok, kept, reduce="amax", include_self=True)
    return scores


def allowed_mask_torch(vocab_size: int, trie: LabelTrie, states: torch.Tensor,
                       label_cum: torch.Tensor | None = None, rows_per_example: int = 1) -> torch.Tensor:
    tok, valid = _row_edges(trie, states, label_cum, rows_per_example)
    mask = torch.zeros(states.numel(), vocab_size, dtype=torch.uint8, device=states.device)
    mask.scatter_reduce_(1, tok, valid.to(torch.uint8), reduce="amax", include_self=True)
    return mask.bool()


def apply_mask_(scores: torch.Tensor, trie: LabelTrie, states: torch.Tensor, *,
                label_cum: torch.Tensor | None = None, rows_per_example: int = 1,
                backend: Backend = "auto") -> torch.Tensor:
    """Set every disallowed entry of ``scores`` (rows, vocab) to -inf in place
    and return it. ``states`` (rows,) are Trie nodes; ``label_cum`` the
    :meth:`LabelTrie.label_cumsum` of the per-example candidate subsets, row
    ``r`` belonging to example ``r // rows_per_example`` (None: all labels)."""
    states = states.to(torch.long)
    if resolve_backend(backend, scores.device) == "cupy":
        from relforge.decoding import cupy_backend

        return cupy_backend.apply_mask_(scores, trie, states, label_cum, rows_per_example)
    return apply_mask_torch_(scores, trie, states, label_cum, rows_per_example)


def allowed_mask(vocab_size: int, trie: LabelTrie, states: torch.Tensor, *,
                 label_cum: torch.Tensor | None = None, rows_per_example: int = 1,
                 backend: Backend = "auto") -> torch.Tensor:
    """(rows, vocab) bool: True where a token is allowed (same arguments as
    :func:`apply_mask_`)."""
    states = states.to(torch.long)
    if resolve_backend(backend, states.device) == "cupy":
        from relforge.decoding import cupy_backend

        return cupy_backend.allowed_mask(vocab_size, trie, states, label_cum, rows_per_example)
    return allowed_mask_torch(vocab_size, trie, states, label_cum, rows_per_example)
