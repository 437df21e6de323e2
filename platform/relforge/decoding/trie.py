"""The label Trie as flat CSR arrays.

A :class:`LabelTrie` is built once per tokenizer and candidate set from the
token sequences the decoder must produce for each label (prefix, verbalized
label, suffix: e.g. a sentinel before the label and EOS after it). The decoder
start token is *not* part of the sequences: the Trie's root is the state after
the decoder prompt.

Layout (all int64 tensors, moved to a device on demand by :meth:`arrays`):

* ``indptr`` (nodes + 1): node ``n``'s outgoing edges are
  ``indptr[n]:indptr[n+1]``, sorted by token;
* ``edge_token``, ``edge_child``: the token and child node of each edge;
* ``edge_key``: ``node * key_base + token``; globally sorted, so a batched
  transition is one ``searchsorted``;
* ``edge_lo``, ``edge_hi``: the labels reachable through the edge, as a range
  of label positions. Labels are numbered in depth-first order so that every
  subtree's labels are contiguous; a per-example candidate subset (entity-type
  constraints) is then a boolean row over labels whose prefix sum answers
  "does this edge lead to an allowed label?" in O(1), without rebuilding the
  Trie. ``edge_lo < 0`` marks an unconditional edge.

Generation needs a few edges that no label sequence contains; they are added
as *synthetic* edges (``edge_real`` False) and ignored by scoring:

* a leaf gets an edge on ``pad_token_id`` to the absorbing ``done`` node (HF
  greedy search keeps feeding pad tokens to finished rows);
* a node where a label ends but which has children (only possible when the
  sequences carry no end token) gets an edge on ``end_token_id`` to ``done``;
* ``done`` has an unconditional self-edge on ``pad_token_id``.

Labels that are prefixes of other labels need nothing special once a suffix
such as EOS is appended: "founder </s>" and "founder of </s>" branch at the
node after "founder".
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TrieArrays:
    """The Trie's flat arrays on one device (see the module docstring)."""

    indptr: torch.Tensor
    edge_token: torch.Tensor
    edge_child: torch.Tensor
    edge_key: torch.Tensor
    edge_lo: torch.Tensor
    edge_hi: torch.Tensor
    key_base: int
    max_degree: int
    num_labels: int
    root: int
    done: int


class LabelTrie:
    """A static Trie over the token sequences of a closed label set.

    ``sequences`` maps each label to the token ids the decoder generates for
    it. Several labels may share a sequence (they then share a leaf).
    """

    root = 0

    def __init__(self, sequences: Mapping[str, Sequence[int]], *,
                 pad_token_id: int | None = None, end_token_id: int | None = None) -> None:
        if not sequences:
            raise ValueError("a LabelTrie needs at least one label")
        self.pad_token_id = pad_token_id if pad_token_id is not None else end_token_id
        self.end_token_id = end_token_id
        children: list[dict[int, int]] = [{}]
        ends: list[list[str]] = [[]]
        for label, seq in sequences.items():
            seq = [int(t) for t in seq]
            if not seq:
                raise ValueError(f"label {label!r} has an empty token sequence")
            node = 0
            for tok in seq:
                nxt = children[node].get(tok)
                if nxt is None:
                    nxt = len(children)
                    children[node][tok] = nxt
                    children.append({})
                    ends.append([])
                node = nxt
            ends[node].append(label)
        self.done = len(children)
        num_nodes = self.done + 1

        # Depth-first label numbering: a node's own labels, then its children
        # by token, so every subtree's labels form one contiguous range.
        labels: list[str] = []
        lo = [0] * num_nodes
        hi = [0] * num_nodes
        end_lo = [0] * num_nodes
        end_hi = [0] * num_nodes
        depth = [0] * num_nodes
        stack: list[tuple[int, bool]] = [(0, False)]
        while stack:
            node, closing = stack.pop()
            if closing:
                hi[node] = len(labels)
                continue
            lo[node] = len(labels)
            end_lo[node] = len(labels)
            labels.extend(ends[node])
            end_hi[node] = len(labels)
            stack.append((node, True))
            for tok in sorted(children[node], reverse=True):
                child = children[node][tok]
                depth[child] = depth[node] + 1
                stack.append((child, False))
        self.labels: list[str] = labels
        self.label_index = {lab: i for i, lab in enumerate(labels)}
        self.sequences = {lab: [int(t) for t in sequences[lab]] for lab in labels}

        # Edges in node order, sorted by token within a node.
        indptr = [0]
        tok_l, child_l, lo_l, hi_l, real_l = [], [], [], [], []
        for node in range(num_nodes):
            out: list[tuple[int, int, int, int, bool]] = []
            if node == self.done:
                if self.pad_token_id is not None:
                    out.append((self.pad_token_id, self.done, -1, -1, False))
            else:
                for tok, child in children[node].items():
                    out.append((tok, child, lo[child], hi[child], True))
                if ends[node]:
                    extra = self.pad_token_id if not children[node] else self.end_token_id
                    if extra is not None and extra not in children[node]:
                        out.append((extra, self.done, end_lo[node], end_hi[node], False))
            out.sort()
            for tok, child, elo, ehi, real in out:
                tok_l.append(tok)
                child_l.append(child)
                lo_l.append(elo)
                hi_l.append(ehi)
                real_l.append(real)
            indptr.append(len(tok_l))

        self.num_nodes = num_nodes
        self.key_base = max(tok_l) + 1 if tok_l else 1
        self.indptr = torch.tensor(indptr, dtype=torch.long)
        self.edge_token = torch.tensor(tok_l, dtype=torch.long)
        self.edge_child = torch.tensor(child_l, dtype=torch.long)
        self.edge_lo = torch.tensor(lo_l, dtype=torch.long)
        self.edge_hi = torch.tensor(hi_l, dtype=torch.long)
        self.edge_real = torch.tensor(real_l, dtype=torch.bool)
        src = torch.repeat_interleave(torch.arange(num_nodes), self.indptr.diff())
        self.edge_parent = src
        self.edge_key = src * self.key_base + self.edge_token
        self.node_depth = torch.tensor(depth, dtype=torch.long)
        self.max_degree = int(self.indptr.diff().max())
        # Each label's path as real edge indices, padded with -1.
        max_len = max(len(s) for s in self.sequences.values())
        paths = torch.full((len(labels), max_len), -1, dtype=torch.long)
        for i, lab in enumerate(labels):
            node = 0
            for j, tok in enumerate(self.sequences[lab]):
                e0, e1 = indptr[node], indptr[node + 1]
                e = e0 + tok_l[e0:e1].index(tok)
                paths[i, j] = e
                node = child_l[e]
        self.label_paths = paths
        self.label_lengths = (paths >= 0).sum(1)
        self._arrays: dict[torch.device, TrieArrays] = {}

    # --- construction from text -------------------------------------------

    @classmethod
    def from_texts(cls, tokenizer, targets: Mapping[str, str], *,
                   prefix_ids: Sequence[int] = (), suffix_ids: Sequence[int] | None = None,
                   pad_token_id: int | None = None) -> LabelTrie:
        """Build from label -> target text with :func:`encode_targets`.

        ``suffix_ids`` defaults to the tokenizer's end token (EOS, or SEP for
        BERT-style tokenizers); ``prefix_ids`` are tokens the decoder must
        produce before every label (e.g. a forced BOS)."""
        seqs = encode_targets(tokenizer, targets, prefix_ids=prefix_ids, suffix_ids=suffix_ids)
        end = end_token_id(tokenizer)
        pad = pad_token_id if pad_token_id is not None else tokenizer.pad_token_id
        return cls(seqs, pad_token_id=pad, end_token_id=end)

    # --- device arrays ----------------------------------------------------

    def arrays(self, device: torch.device | str = "cpu") -> TrieArrays:
        """The flat arrays on ``device`` (copied once, then cached)."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        arr = self._arrays.get(device)
        if arr is None:
            arr = TrieArrays(
                indptr=self.indptr.to(device), edge_token=self.edge_token.to(device),
                edge_child=self.edge_child.to(device), edge_key=self.edge_key.to(device),
                edge_lo=self.edge_lo.to(device), edge_hi=self.edge_hi.to(device),
                key_base=self.key_base, max_degree=self.max_degree,
                num_labels=len(self.labels), root=self.root, done=self.done)
            self._arrays[device] = arr
        return arr

    # --- candidate subsets ------------------------------------------------

    def label_mask(self, subsets: Sequence[Iterable[str] | None]) -> torch.Tensor:
        """(examples, labels) bool: which labels each example may produce
        (``None``: all). Unknown labels are an error."""
        mask = torch.zeros(len(subsets), len(self.labels), dtype=torch.bool)
        for i, sub in enumerate(subsets):
            if sub is None:
                mask[i] = True
                continue
            for lab in sub:
                try:
                    mask[i, self.label_index[lab]] = True
                except KeyError:
                    raise KeyError(f"label {lab!r} is not in the Trie") from None
        return mask

    @staticmethod
    def label_cumsum(mask: torch.Tensor) -> torch.Tensor:
        """(examples, labels + 1) int32 prefix sums of a label mask: edge ``e``
        is allowed for example ``b`` iff ``cum[b, hi[e]] - cum[b, lo[e]] > 0``."""
        cum = torch.zeros(mask.shape[0], mask.shape[1] + 1, dtype=torch.int32, device=mask.device)
        cum[:, 1:] = mask.to(torch.int32).cumsum(1)
        return cum

    # --- walking ----------------------------------------------------------

    def step(self, states: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Advance every row by one token, vectorised. A token with no edge
        leads to ``done`` (only a masked-out, -inf beam can produce one)."""
        arr = self.arrays(states.device)
        key = states * arr.key_base + tokens.clamp(0, arr.key_base - 1)
        idx = torch.searchsorted(arr.edge_key, key).clamp(max=arr.edge_key.numel() - 1)
        hit = (arr.edge_key[idx] == key) & (tokens < arr.key_base) & (tokens >= 0)
        return torch.where(hit, arr.edge_child[idx], torch.full_like(states, arr.done))

    def walk(self, tokens: torch.Tensor) -> torch.Tensor:
        """The state of each row after consuming ``tokens`` (rows, length) from
        the root; used only when a row's parent state is unknown."""
        states = torch.zeros(tokens.shape[0], dtype=torch.long, device=tokens.device)
        for j in range(tokens.shape[1]):
            states = self.step(states, tokens[:, j])
        return states

    def match(self, tokens: Sequence[int]) -> list[str]:
        """The labels whose full sequence ``tokens`` spells (trailing pad/end
        tokens after a complete label are ignored)."""
        seq = [int(t) for t in tokens]
        out = []
        for lab, s in self.sequences.items():
            n = len(s)
            if seq[:n] == s and all(t in (self.pad_token_id, self.end_token_id) for t in seq[n:]):
                out.append(lab)
        return out


def end_token_id(tokenizer) -> int | None:
    """The token that ends a target: EOS, or SEP for BERT-style tokenizers."""
    if tokenizer.eos_token_id is not None:
        return tokenizer.eos_token_id
    return tokenizer.sep_token_id


def encode_targets(tokenizer, targets: Mapping[str, str], *, prefix_ids: Sequence[int] = (),
                   suffix_ids: Sequence[int] | None = None) -> dict[str, list[int]]:
    """label -> the token ids the decoder must generate for its target text.

    The text is tokenized without the tokenizer's own special tokens, then
    wrapped in ``prefix_ids`` and ``suffix_ids`` (default: the end token), so
    the same ids come out for T5 (``</s>``) and BERT-style (``[SEP]``)
    decoders. Training targets must be encoded the same way."""
    if suffix_ids is None:
        end = end_token_id(tokenizer)
        suffix_ids = () if end is None else (end,)
    texts = list(targets.values())
    enc = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return {lab: [*prefix_ids, *ids, *suffix_ids] for lab, ids in zip(targets, enc)}
