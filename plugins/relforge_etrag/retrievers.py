"""Retrievers over span-vector memories: differentiable kNN, hard top-k, random.

An instance is a stack of ``S`` span vectors (head, tail, summary/label), so a
query is ``(batch, S, H)`` and the memory ``(M, S, H)`` (a plain ``(batch, H)``
query is treated as ``S = 1``). The distance between two instances is the mean
over spans of the cosine distance; with every span vector L2-normalised it is
one matrix product: ``1 - (q @ m.T) / S`` on the flattened ``(S * H)`` rows.

``exclude`` is a ``(batch,)`` tensor of one memory row per query (-1 for
none) or a ``(batch, M)`` boolean mask, so that every memory item of the
query's own example (a pair with two relations is stored once per relation)
is hidden from it during training. The shape helpers are the core's
(:mod:`relforge.retrieval`), part of the retriever contract.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from relforge.components import Retrieval, Retriever, Settings
from relforge.retrieval import (
    as_spans, at_least_float32, check_k, exclusion_mask, gather_neighbours, mean_cosine_similarity,
)


def log1m_softmax(s: torch.Tensor) -> torch.Tensor:
    """log(1 - softmax(s)) along the last axis, exactly and without -inf/NaN.

    Only the largest weight can exceed 1/2; every other entry is
    ``log1p(-w)``, accurate there. For the largest, 1 - w is the sum of the
    other weights, so its log is their log-sum-exp, computed from the log
    weights: finite even when w rounds to 1 in floating point (where the
    public code's ``torch.log(1 - w)`` gives -inf and NaN gradients).
    Entries of -inf stay at log(1 - 0) = 0.
    """
    log_w = torch.log_softmax(s, dim=-1)
    out = torch.log1p(-log_w.exp().clamp(max=0.5))  # the clamp only touches the top entry, replaced below
    top = s.argmax(-1, keepdim=True)
    rest = log_w.scatter(-1, top, float("-inf")).logsumexp(-1, keepdim=True)
    return out.scatter(-1, top, rest)


def soft_knn_weights(scores: torch.Tensor, k: int, temperature: float = 1.0) -> torch.Tensor:
    """Plötz and Roth's continuous relaxation of k nearest neighbours.

    ``scores`` (batch, M) are similarities (``-distance``); entries of -inf are
    never selected. With s_1 = scores, for i = 1..k: w_i = softmax(s_i / t),
    s_{i+1} = s_i + log(1 - w_i). Returns (batch, k, M); every w_i sums to one.

    The temperature divides the scores inside every softmax (Plötz and Roth,
    2018, and the public ETRAG code), not once up front: with s_1 = scores / t
    and w_i = softmax(s_i), two rows get w_2 = (1/2, 1/2) at every temperature,
    so that form never approaches hard top-k. Both agree at t = 1.
    ``log(1 - w_i)`` is guarded by :func:`log1m_softmax`, so low temperatures
    (weights that round to 1) stay finite and still push the chosen row down.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    s = at_least_float32(scores)
    out = []
    for _ in range(k):
        logits = s / temperature
        out.append(torch.softmax(logits, dim=-1))
        s = s + log1m_softmax(logits)
    return torch.stack(out, dim=1)


def standardize(scores: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-10) -> torch.Tensor:
    """``scores`` (batch, M) minus their mean, over their standard deviation,
    per row, over the entries ``mask`` does not hide (hidden entries are
    returned unchanged for the caller to mask). Gradients flow through the
    mean and the deviation; ``eps`` keeps a row of equal scores finite."""
    keep = torch.ones_like(scores, dtype=torch.bool) if mask is None else ~mask
    n = keep.sum(-1, keepdim=True).clamp_min(1)
    mean = (scores * keep).sum(-1, keepdim=True) / n
    var = (((scores - mean) * keep) ** 2).sum(-1, keepdim=True) / n
    return torch.where(keep, (scores - mean) / (var + eps).sqrt(), scores)


class SoftKNNRetriever(Retriever):
    """Differentiable kNN (Plötz and Roth, 2018) over mean cosine distance:
    each of the k soft neighbours is the w_i-weighted sum of the memory rows,
    so gradients reach both the query and the memory vectors."""

    name = "soft_knn"

    class Settings(Settings):
        temperature: float = Field(1.0, gt=0)
        #: "distance": s = -mean cosine distance (the paper and its code), whose spread over
        #: the candidates shrinks when the retriever's vectors grow alike (they collapse under
        #: end-to-end training, flattening the weights: issue #17); "standardized": those
        #: scores centred and divided by their standard deviation over each query's
        #: candidates, so the temperature acts on the ranking, not on the scale of the space
        scores: Literal["distance", "standardized"] = "distance"

    def retrieve(self, query, memory, k, exclude=None) -> Retrieval:
        sim = mean_cosine_similarity(query, memory)
        mask = exclusion_mask(exclude, sim.shape[0], sim.shape[1], sim.device)
        check_k(k, sim.shape[1], mask)
        scores = -(1.0 - sim)  # s = -distance
        if self.settings.scores == "standardized":
            scores = standardize(scores, mask)
        if mask is not None:
            scores = scores.masked_fill(mask, float("-inf"))
        w = soft_knn_weights(scores, k, self.settings.temperature)
        return Retrieval(weights=w, indices=w.argmax(-1), neighbours=gather_neighbours(w, memory, soft=True))


class HardTopKRetriever(Retriever):
    """The k memory rows nearest in mean cosine distance (no gradient through
    the selection; the selected rows' vectors still carry gradients)."""

    name = "topk"

    def retrieve(self, query, memory, k, exclude=None) -> Retrieval:
        sim = mean_cosine_similarity(query, memory)
        mask = exclusion_mask(exclude, sim.shape[0], sim.shape[1], sim.device)
        check_k(k, sim.shape[1], mask)
        if mask is not None:
            sim = sim.masked_fill(mask, float("-inf"))
        idx = sim.topk(k, dim=-1).indices
        w = torch.zeros(sim.shape[0], k, sim.shape[1], device=sim.device).scatter_(2, idx[..., None], 1.0)
        return Retrieval(weights=w, indices=idx, neighbours=gather_neighbours(idx, memory, soft=False))


class RandomRetriever(Retriever):
    """k memory rows drawn uniformly without replacement (an ablation)."""

    name = "random"

    class Settings(Settings):
        seed: int = 0

    def __init__(self, settings=None) -> None:
        super().__init__(settings)
        self._gen = torch.Generator().manual_seed(self.settings.seed)

    def retrieve(self, query, memory, k, exclude=None) -> Retrieval:
        q, m = as_spans(query), as_spans(memory)
        mask = exclusion_mask(exclude, q.shape[0], m.shape[0], m.device)
        check_k(k, m.shape[0], mask)
        keys = torch.rand(q.shape[0], m.shape[0], generator=self._gen).to(m.device)
        if mask is not None:
            keys = keys.masked_fill(mask, -1.0)
        idx = keys.topk(k, dim=-1).indices
        w = torch.zeros(q.shape[0], k, m.shape[0], device=m.device).scatter_(2, idx[..., None], 1.0)
        return Retrieval(weights=w, indices=idx, neighbours=gather_neighbours(idx, memory, soft=False))


# ---- candidate search over a large cached memory ---------------------------

class MemorySearch:
    """Top-C candidate rows of a cached memory for each query, by mean cosine
    similarity: chunked matrix products with ``topk`` (exact), or a FAISS
    inner-product index over the per-span-normalised, flattened rows divided
    by sqrt(S) (inner product = mean cosine), built once per memory refresh."""

    def __init__(self, memory: torch.Tensor, backend: str = "torch", chunk: int = 16384) -> None:
        self.memory = as_spans(memory).detach()
        self.backend, self.chunk = backend, chunk
        s = self.memory.shape[1]
        self._flat = F.normalize(self.memory.float(), dim=-1).reshape(self.memory.shape[0], -1) / s ** 0.5
        self._index = None
        if backend == "faiss":
            try:
                import faiss
            except ImportError as exc:
                raise ImportError("memory_search: faiss needs the `faiss-cpu` (or faiss-gpu) package: "
                                  "pip install faiss-cpu") from exc
            self._index = faiss.IndexFlatIP(self._flat.shape[1])
            self._index.add(self._flat.cpu().numpy())
        elif backend != "torch":
            raise ValueError(f"memory_search must be 'torch' or 'faiss', got {backend!r}")

    def search(self, query: torch.Tensor, c: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(similarities, indices), each (batch, c), best first."""
        q = as_spans(query).detach()
        qf = F.normalize(q.float(), dim=-1).reshape(q.shape[0], -1) / q.shape[1] ** 0.5
        c = min(c, self._flat.shape[0])
        if self._index is not None:
            sims, idx = self._index.search(qf.cpu().numpy(), c)
            return torch.from_numpy(sims).to(q.device), torch.from_numpy(idx).long().to(q.device)
        best_s, best_i = None, None
        for a in range(0, self._flat.shape[0], self.chunk):
            sims = qf @ self._flat[a:a + self.chunk].to(qf.device).T
            top = sims.topk(min(c, sims.shape[1]), dim=-1)
            s, i = top.values, top.indices + a
            if best_s is not None:
                s, i = torch.cat([best_s, s], 1), torch.cat([best_i, i], 1)
                top = s.topk(min(c, s.shape[1]), dim=-1)
                s, i = top.values, i.gather(1, top.indices)
            best_s, best_i = s, i
        return best_s, best_i
