"""Shape helpers of the retriever contract (:attr:`relforge.components.Ability.SPAN_MEMORY`).

An instance is a stack of ``S`` span vectors (ETRAG: head, tail, summary), so
a query is ``(batch, S, H)`` and a memory ``(M, S, H)``; a plain ``(rows, H)``
tensor is taken as ``S = 1``. ``exclude`` is None, a ``(batch,)`` tensor of
one memory row per query (-1 for none), or a ``(batch, M)`` boolean mask.
Any retriever plugin can use these to honour the contract.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from relforge.engine.precision import full_precision


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in at least float32 (half precision is promoted; float64 kept)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def as_spans(x: torch.Tensor) -> torch.Tensor:
    """(rows, S, H) from (rows, H) or (rows, S, H)."""
    if x.dim() == 2:
        return x[:, None, :]
    if x.dim() != 3:
        raise ValueError(f"expected (rows, dim) or (rows, spans, dim) vectors, got shape {tuple(x.shape)}")
    return x


def mean_cosine_similarity(query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    """(batch, M): the mean over spans of the cosine similarity, as one matmul."""
    q, m = as_spans(query), as_spans(memory)
    if q.shape[1:] != m.shape[1:]:
        raise ValueError(f"query spans/dim {tuple(q.shape[1:])} differ from memory {tuple(m.shape[1:])}")
    s = q.shape[1]
    with full_precision(q):  # in float32 under a bf16 training step's autocast too
        qn = F.normalize(at_least_float32(q), dim=-1).reshape(q.shape[0], -1)
        mn = F.normalize(at_least_float32(m), dim=-1).reshape(m.shape[0], -1)
        return qn @ mn.T / s


def exclusion_mask(exclude: torch.Tensor | None, batch: int, size: int, device) -> torch.Tensor | None:
    """(batch, M) bool: the memory rows each query must not retrieve."""
    if exclude is None:
        return None
    exclude = exclude.to(device)
    if exclude.dim() == 2:
        if tuple(exclude.shape) != (batch, size):
            raise ValueError(f"exclude mask must be ({batch}, {size}), got {tuple(exclude.shape)}")
        return exclude.bool()
    if tuple(exclude.shape) != (batch,):
        raise ValueError(f"exclude must be ({batch},) row indices or a ({batch}, {size}) mask, "
                         f"got {tuple(exclude.shape)}")
    mask = torch.zeros(batch, size, dtype=torch.bool, device=device)
    rows = (exclude >= 0).nonzero().flatten()
    mask[rows, exclude[rows].long()] = True
    return mask


def check_k(k: int, size: int, mask: torch.Tensor | None) -> None:
    """Refuse a ``k`` that some query cannot be given."""
    if k < 1:
        raise ValueError(f"k must be at least 1 to retrieve (k = 0 means no retrieval), got {k}")
    free = size if mask is None else int((~mask).sum(1).min()) if mask.numel() else size
    if free < k:
        raise ValueError(f"cannot retrieve {k} neighbours: a query has only {free} memory rows it may use "
                         f"(memory size {size}); lower k or enlarge the memory pool")


def gather_neighbours(weights_or_idx: torch.Tensor, memory: torch.Tensor, soft: bool) -> torch.Tensor:
    """(batch, k, S, H) neighbours: weighted sums of memory rows for soft
    (batch, k, M) weights, the rows themselves for (batch, k) indices."""
    m = as_spans(memory)
    if soft:
        with full_precision(m):  # the weighted sums in float32 under autocast too
            m32 = at_least_float32(m)
            return torch.einsum("bkm,msh->bksh", weights_or_idx.to(m32.dtype), m32)
    return m[weights_or_idx]
