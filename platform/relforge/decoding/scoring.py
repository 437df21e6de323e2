"""Exact, batched scoring of every candidate label over the Trie.

Teacher forcing over the Trie rather than over each candidate sequence: the
sources are encoded once; then the decoder runs depth by depth over the Trie,
one row per (example, internal node) that can still reach a permitted label,
with the KV cache of each row copied from its parent row
(``Cache.reorder_cache``). So

* every shared prefix is decoded once, and the vocabulary projection plus
  log-softmax runs once per internal node rather than once per candidate
  position;
* the cross-attention keys and values are computed once per example (at the
  root) and copied to the children, not recomputed for every candidate, which
  a padded one-pass-per-candidate batch would do;
* the number of forward calls is the Trie's depth, whatever the batch size.

The result is, per example, the log-probability of every real Trie edge; a
label's total log-probability is the sum along its path (exact: it equals
teacher forcing the label's sequence alone, up to float rounding), and its
SuRE-style branch-renormalised score the sum of the edge log-probabilities
renormalised over the *permitted* children of each node (non-branching nodes
contribute 0).

With ``exact=False`` only the SuRE-style scores are computed, and the walk is
pruned to the nodes on the way to a branching node: the tails of labels below
their last branching node are never decoded (their renormalised
log-probability is 0 whatever the model says), which on relation label sets,
mostly chains of words, removes most of the work.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from relforge.decoding.trie import LabelTrie


def cache_argument(model) -> str:
    """The name under which ``model.forward`` takes (and its output returns)
    the KV cache: ``cache`` from transformers 5.2x on, ``past_key_values``
    before (the old name still works there, with a deprecation warning on
    every call)."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a PEFT model's is *args
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


@dataclass
class TrieScores:
    """Scores of every label (in ``trie.labels`` order) for each example.

    ``total``: (examples, labels) summed token log-probabilities;
    ``branch``: the SuRE-style sum of branch-renormalised log-probabilities;
    ``lengths``: (labels,) token counts; ``allowed``: (examples, labels) bool.
    Entries of labels an example may not produce are -inf; ``total`` is None
    when it was not computed (``exact=False``).
    """

    total: torch.Tensor | None
    branch: torch.Tensor
    lengths: torch.Tensor
    allowed: torch.Tensor


def decoder_start_id(model) -> int:
    cfg = model.generation_config
    start = getattr(cfg, "decoder_start_token_id", None)
    if start is None:
        start = getattr(model.config, "decoder_start_token_id", None)
    if start is None:
        raise ValueError("the model has no decoder_start_token_id")
    return int(start)


@torch.no_grad()
def encode(model, input_ids: torch.Tensor, attention_mask: torch.Tensor):
    """The encoder's last hidden states (examples, length, hidden)."""
    return model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def score_trie(model, trie: LabelTrie, encoder_hidden: torch.Tensor, attention_mask: torch.Tensor,
               label_mask: torch.Tensor | None = None, max_rows: int = 2048,
               exact: bool = True, grad: bool = False) -> TrieScores:
    """Score all labels for every example (see the module docstring).

    ``max_rows`` bounds the decoder rows of one chunk of examples (memory: each
    row holds a copy of its example's cross-attention cache). With ``grad``
    the scores carry gradients to the decoder and to ``encoder_hidden``: each
    shared prefix is decoded once per example and every candidate's
    log-likelihood is gathered from that shared pass (equal to teacher
    forcing each candidate alone, values and gradients, in eval mode; tested)
    -- what a loss over candidates needs at a fraction of a pass per
    candidate."""
    with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
        return _score_trie(model, trie, encoder_hidden, attention_mask, label_mask, max_rows, exact)


def _score_trie(model, trie: LabelTrie, encoder_hidden: torch.Tensor, attention_mask: torch.Tensor,
                label_mask: torch.Tensor | None, max_rows: int, exact: bool) -> TrieScores:
    from transformers.modeling_outputs import BaseModelOutput

    device = encoder_hidden.device
    n_ex, n_lab = encoder_hidden.shape[0], len(trie.labels)
    if label_mask is None:
        label_mask = torch.ones(n_ex, n_lab, dtype=torch.bool)
    label_mask = label_mask.to(device)
    arr = trie.arrays(device)
    real = trie.edge_real.to(device)
    n_edges = arr.edge_token.numel()
    # every level's (example, edge) -> value, assembled at the end out of place (gradients flow through)
    lp_parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
    # widest level of the Trie bounds the rows one example can need
    per_example = int(torch.bincount(trie.node_depth).max())
    chunk = max(1, max_rows // per_example)
    cum_all = LabelTrie.label_cumsum(label_mask)
    start_tok = decoder_start_id(model)
    cache_arg = cache_argument(model)
    expand = trie_internal_nodes(trie) if exact else trie_sure_nodes(trie)
    expand = expand.to(device)
    for c0 in range(0, n_ex, chunk):
        ex = torch.arange(c0, min(n_ex, c0 + chunk), device=device)
        ex = ex[label_mask[ex].any(1)]
        nodes = torch.zeros_like(ex)
        tokens = torch.full_like(ex, start_tok)
        past = None
        while ex.numel():
            out = model(encoder_outputs=BaseModelOutput(last_hidden_state=encoder_hidden[ex]),
                        attention_mask=attention_mask[ex], decoder_input_ids=tokens[:, None],
                        **{cache_arg: past}, use_cache=True, return_dict=True)
            past = out[cache_arg] if cache_arg in out else None
            logp = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
            # the (rows, max_degree) block of each row's outgoing edges
            start = arr.indptr[nodes]
            deg = arr.indptr[nodes + 1] - start
            offs = torch.arange(arr.max_degree, device=device)
            edge = torch.where(offs < deg[:, None], start[:, None] + offs, 0)
            cum = cum_all[ex].long()
            reach = cum.gather(1, arr.edge_hi[edge].clamp(min=0)) - cum.gather(1, arr.edge_lo[edge].clamp(min=0))
            ok = (offs < deg[:, None]) & real[edge] & (reach > 0)
            lp = logp.gather(1, arr.edge_token[edge])
            lp_ok = torch.where(ok, lp, float("-inf"))
            norm = torch.logsumexp(lp_ok, dim=1, keepdim=True)
            rows_ex = ex[:, None].expand_as(edge)
            lp_parts.append((rows_ex[ok], edge[ok], lp[ok], (lp - norm)[ok]))
            # children that have outgoing real edges become the next level
            child = arr.edge_child[edge]
            nxt = ok & expand[child]
            parent_row, slot = nxt.nonzero(as_tuple=True)
            if parent_row.numel() == 0:
                break
            past.reorder_cache(parent_row)
            ex = ex[parent_row]
            nodes = child[parent_row, slot]
            tokens = arr.edge_token[edge[parent_row, slot]]
        del past
    flat_idx = torch.cat([r * n_edges + e for r, e, _, _ in lp_parts]) if lp_parts else \
        torch.zeros(0, dtype=torch.long, device=device)
    dtype = lp_parts[0][2].dtype if lp_parts else torch.float32
    edge_lp = torch.zeros(n_ex * n_edges, device=device, dtype=dtype).index_put(
        (flat_idx,), torch.cat([v for _, _, v, _ in lp_parts]) if lp_parts else torch.zeros(0, device=device)
    ).view(n_ex, n_edges)
    edge_branch = torch.zeros(n_ex * n_edges, device=device, dtype=dtype).index_put(
        (flat_idx,), torch.cat([b for _, _, _, b in lp_parts]) if lp_parts else torch.zeros(0, device=device)
    ).view(n_ex, n_edges)
    paths = trie.label_paths.to(device)
    valid = paths >= 0
    idx = paths.clamp(min=0)
    total = (edge_lp[:, idx] * valid).sum(-1)
    branch = (edge_branch[:, idx] * valid).sum(-1)
    neg = torch.tensor(float("-inf"), device=device)
    return TrieScores(total=torch.where(label_mask, total, neg) if exact else None,
                      branch=torch.where(label_mask, branch, neg),
                      lengths=trie.label_lengths.to(device), allowed=label_mask)


def _real_degree(trie: LabelTrie) -> torch.Tensor:
    real = trie.edge_real
    return torch.zeros(trie.num_nodes, dtype=torch.long).index_add_(
        0, trie.edge_parent[real], torch.ones(int(real.sum()), dtype=torch.long))


def trie_internal_nodes(trie: LabelTrie) -> torch.Tensor:
    """(nodes,) bool: nodes with a real outgoing edge (decoded for exact scores)."""
    return _real_degree(trie) > 0


def trie_branching_nodes(trie: LabelTrie) -> torch.Tensor:
    """(nodes,) bool: nodes with more than one real outgoing edge."""
    return _real_degree(trie) > 1


def trie_sure_nodes(trie: LabelTrie) -> torch.Tensor:
    """(nodes,) bool: branching nodes and their ancestors, the only nodes a
    SuRE-style score needs decoded."""
    need = trie_branching_nodes(trie)
    parent = torch.full((trie.num_nodes,), -1, dtype=torch.long)
    real = trie.edge_real
    parent[trie.edge_child[real]] = trie.edge_parent[real]
    # deepest first, so a node's mark reaches its parent before the parent is visited
    for node in torch.argsort(trie.node_depth, descending=True).tolist():
        if need[node] and parent[node] >= 0:
            need[parent[node]] = True
    return need
