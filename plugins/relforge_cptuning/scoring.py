"""Differentiable, batched sequence scores of every candidate of a batch.

Two ways to the same numbers (``loss.scoring``): :func:`score_candidates`
(``padded``, the default) makes every (example, candidate) pair one decoder
row of a teacher-forced pass (the positions all candidates share decoded
once per example, the gold candidate read from the generation pass);
:func:`score_candidates_shared`
(``shared``) uses the core's :func:`relforge.decoding.scoring.score_trie` with
``grad=True``, each shared prefix decoded once per example. Neither runs the
encoder again: the rows reuse the encoder states of the backbone's forward
pass (``encoder_last_hidden_state``), so one backward pass reaches the
encoder through every candidate. The score of a candidate is its
length-normalised (``mean``) or total (``sum``) token log-probability, end
token included: the same number the core's ``relforge.exact`` decoder ranks
by at inference.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from relforge.decoding.scoring import decoder_start_id
from relforge.decoding.trie import encode_targets


@dataclass
class CandidateScores:
    """Scores of a batch's candidates.

    ``scores``: (rows, max candidates) with -inf where a row has fewer
    candidates; ``valid``: bool mask of the real entries; ``labels``: the
    label of each entry, row by row (``labels[i][j]``); ``gold``: bool mask of
    the entries that are gold for their row."""

    scores: torch.Tensor
    valid: torch.Tensor
    gold: torch.Tensor
    labels: list[list[str]]


class TargetCache:
    """Token ids of target texts, encoded once per tokenizer (as the core's
    training targets are: :func:`relforge.decoding.trie.encode_targets`)."""

    def __init__(self) -> None:
        self._ids: dict[tuple[int, int, str], list[int]] = {}

    def ids(self, tokenizer, texts: Sequence[str], max_length: int | None = None) -> list[list[int]]:
        key = (id(tokenizer), len(tokenizer))
        missing = sorted({t for t in texts if (*key, t) not in self._ids})
        if missing:
            enc = encode_targets(tokenizer, {str(i): t for i, t in enumerate(missing)})
            for i, t in enumerate(missing):
                self._ids[(*key, t)] = enc[str(i)]
        out = [self._ids[(*key, t)] for t in texts]
        return [s[:max_length] for s in out] if max_length else out


def _common_prefix(seqs: Sequence[Sequence[int]]) -> list[int]:
    """The tokens every sequence begins with, leaving each at least one of its own."""
    limit = min(len(s) for s in seqs) - 1
    prefix: list[int] = []
    for i in range(max(0, limit)):
        tok = seqs[0][i]
        if any(s[i] != tok for s in seqs):
            break
        prefix.append(tok)
    return prefix


def _summed_nll(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(rows,) summed -log p of each row's ``target`` tokens (-100: none) under ``logits`` (rows, T, V);
    cross_entropy avoids materialising a second (rows, T, V) tensor."""
    flat = logits.float().reshape(-1, logits.shape[-1])
    return torch.nn.functional.cross_entropy(flat, target.reshape(-1), ignore_index=-100,
                                             reduction="none").view(target.shape).sum(1)


def _teacher_forced(inputs: Sequence[Sequence[int]], targets: Sequence[Sequence[int]], pad: int,
                    device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded decoder inputs (``pad``) and targets (-100) of equal-length row pairs: causal attention
    keeps the padding out of the real positions, so no decoder attention mask is needed."""
    length = max(len(t) for t in targets)
    dec_in = torch.full((len(targets), length), pad, dtype=torch.long)
    target = torch.full((len(targets), length), -100, dtype=torch.long)
    for r, (i, t) in enumerate(zip(inputs, targets)):
        dec_in[r, :len(i)] = torch.tensor(i, dtype=torch.long)
        target[r, :len(t)] = torch.tensor(t, dtype=torch.long)
    return dec_in.to(device), target.to(device)


def _check_inputs(encoder_hidden: torch.Tensor, candidates: Sequence, gold: Sequence, normalize: str) -> None:
    if normalize not in ("mean", "sum"):
        raise ValueError(f"normalize must be 'mean' or 'sum', got {normalize!r}")
    if len(candidates) != encoder_hidden.shape[0] or len(gold) != len(candidates):
        raise ValueError(f"{encoder_hidden.shape[0]} encoded rows, {len(candidates)} candidate sets and "
                         f"{len(gold)} gold lists")


def score_candidates(backbone, tokenizer, encoder_hidden: torch.Tensor, attention_mask: torch.Tensor,
                     candidates: Sequence[Mapping[str, str]], gold: Sequence[Sequence[str]], *,
                     cache: TargetCache | None = None, normalize: str = "mean",
                     keep: Sequence[Sequence[str]] | None = None,
                     max_target_length: int | None = None,
                     reuse: tuple[torch.Tensor, torch.Tensor] | None = None,
                     counts: dict[str, int] | None = None) -> CandidateScores:
    """Score the candidates of each row with gradients.

    ``candidates[i]``: label -> target text of row ``i``; ``gold[i]``: its gold
    labels; ``keep[i]`` (optional): the labels of row ``i`` to score (the
    others are left out, e.g. all but the hard negatives).

    One decoder row per (example, candidate), teacher-forced, but the
    positions every candidate shares (the start token and the tokens all
    candidates begin with, such as a template's opening sentinel: their
    cross-attention keys and values over the source, their states, and the
    distribution of the first token that differs) are computed once per
    example and their cache copied to the example's candidate rows: the same
    values and gradients as a full pass per candidate (tested), without
    recomputing each example's cross-attention keys and values, and its
    shared positions' vocabulary projection, once per candidate.

    ``reuse``: ``(logits, labels)`` of the model's own teacher-forced pass
    over each row's target (the generation loss's); a candidate whose tokens
    are exactly row ``i``'s target takes its score from those logits instead
    of another decoder row (the same pass the generation loss trains, so the
    gold candidate costs nothing more). ``counts`` (optional) receives how
    many candidates were scored each way (``decoded``/``reused``)."""
    _check_inputs(encoder_hidden, candidates, gold, normalize)
    cache = cache or TargetCache()
    device = encoder_hidden.device
    labels: list[list[str]] = []
    texts: list[str] = []
    place: list[tuple[int, int]] = []
    for i, cand in enumerate(candidates):
        wanted = set(keep[i]) if keep is not None else None
        labs = [lab for lab in cand if wanted is None or lab in wanted]
        labels.append(labs)
        texts += [cand[lab] for lab in labs]
        place += [(i, j) for j in range(len(labs))]
    width = max((len(x) for x in labels), default=0)
    n_rows = len(candidates)
    valid = torch.zeros(n_rows, width, dtype=torch.bool, device=device)
    is_gold = torch.zeros(n_rows, width, dtype=torch.bool, device=device)
    for i, labs in enumerate(labels):
        g = set(gold[i])
        for j, lab in enumerate(labs):
            valid[i, j] = True
            is_gold[i, j] = lab in g
    scores = torch.full((n_rows, width), float("-inf"), device=device)
    if not texts:
        return CandidateScores(scores, valid, is_gold, labels)
    seqs = cache.ids(tokenizer, texts, max_target_length)
    empty = sorted({texts[k] for k, sq in enumerate(seqs) if not sq})
    if empty:
        raise ValueError(f"candidate target(s) {empty[:3]} encode to no tokens: a sequence score needs at least one "
                         f"(check the template's verbalization)")
    # (row, column) -> score tensor; filled from the reused pass, then from the decoded rows
    values: list[torch.Tensor] = []
    at: list[tuple[int, int]] = []
    decode = list(range(len(seqs)))
    if reuse is not None:
        logits, target = reuse
        own = [[int(t) for t in row[row != -100]] for row in target.detach().cpu()]
        hits = [k for k in decode if own[place[k][0]] and seqs[k] == own[place[k][0]]]
        if hits:
            rows = torch.tensor([place[k][0] for k in hits], device=logits.device)
            lab = target[rows]
            total = -_summed_nll(logits[rows], lab)
            n_tok = (lab != -100).sum(1).clamp(min=1)
            values.append((total / n_tok if normalize == "mean" else total).to(device))
            at += [place[k] for k in hits]
            hit = set(hits)
            decode = [k for k in decode if k not in hit]
    if counts is not None:
        counts["decoded"] = counts.get("decoded", 0) + len(decode)
        counts["reused"] = counts.get("reused", 0) + len(seqs) - len(decode)
    if decode:
        # the positions every decoded candidate shares (the start token and the tokens all candidates begin
        # with, e.g. a template's sentinel) are decoded once per example; the rest of each candidate in
        # length buckets (little padding when candidates differ much in length, as NYT's do)
        shared = _common_prefix([seqs[k] for k in decode])
        rest = [len(seqs[k]) - len(shared) - 1 for k in decode]
        for bucket in length_buckets(rest, [place[k][0] for k in decode], encoder_hidden.shape[1], len(shared)):
            ks = [decode[b] for b in bucket]
            own = [seqs[k] for k in ks]
            total = _decode_rows(backbone, tokenizer, encoder_hidden, attention_mask, own, [place[k][0] for k in ks],
                                 shared)
            n_tok = torch.tensor([max(1, len(s)) for s in own], device=device)
            values.append(total / n_tok if normalize == "mean" else total)
            at += [place[k] for k in ks]
    r = torch.tensor([i for i, _ in at], device=device)
    c = torch.tensor([j for _, j in at], device=device)
    scores = scores.index_put((r, c), torch.cat(values))
    return CandidateScores(scores, valid, is_gold, labels)


def length_buckets(lengths: Sequence[int], example_of: Sequence[int], source_length: int, shared: int,
                   kv_cost: float = 0.1) -> list[list[int]]:
    """Rows (indices into ``lengths``) grouped into buckets of similar
    continuation length, chosen to minimise the decoder positions computed:
    a bucket costs its rows times its longest continuation (padding
    included), plus, for each example it holds, the shared positions and its
    cross-attention keys/values again (``kv_cost`` positions per source
    token). Buckets are runs of the distinct lengths, found exactly (a small
    dynamic programme over at most ``max_target_length`` lengths)."""
    by_length: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        by_length.setdefault(n, []).append(i)
    keys = sorted(by_length)
    per_example = shared + 1 + kv_cost * source_length

    def cost(a: int, b: int) -> float:  # the bucket of distinct lengths keys[a..b-1]
        rows = [i for k in keys[a:b] for i in by_length[k]]
        return len(rows) * max(0, keys[b - 1]) + per_example * len({example_of[i] for i in rows})

    best = [0.0] + [float("inf")] * len(keys)
    cut = [0] * (len(keys) + 1)
    for b in range(1, len(keys) + 1):
        for a in range(b):
            c = best[a] + cost(a, b)
            if c < best[b]:
                best[b], cut[b] = c, a
    buckets, b = [], len(keys)
    while b > 0:
        a = cut[b]
        buckets.append([i for k in keys[a:b] for i in by_length[k]])
        b = a
    return buckets[::-1]


def _decode_rows(backbone, tokenizer, encoder_hidden: torch.Tensor, attention_mask: torch.Tensor,
                 own: Sequence[Sequence[int]], example_of: Sequence[int], shared: Sequence[int]) -> torch.Tensor:
    """Summed log-probabilities of the sequences ``own`` (each beginning
    with ``shared``), row ``r`` conditioned on example ``example_of[r]``:
    the start token and ``shared`` decoded once per example, the cache
    copied to the rows, the rest teacher-forced (right-padded)."""
    from transformers.modeling_outputs import BaseModelOutput

    from relforge.decoding.scoring import cache_argument

    device = encoder_hidden.device
    examples = sorted(set(example_of))
    ex_t = torch.tensor(examples, device=device)
    slot = {e: n for n, e in enumerate(examples)}
    row_ex = torch.tensor([slot[e] for e in example_of], device=device)
    cache_arg = cache_argument(backbone)
    head = torch.tensor([decoder_start_id(backbone), *shared], dtype=torch.long, device=device)
    first = backbone(encoder_outputs=BaseModelOutput(last_hidden_state=encoder_hidden[ex_t]),
                     attention_mask=attention_mask[ex_t], decoder_input_ids=head.expand(len(examples), -1),
                     use_cache=True, return_dict=True, **{cache_arg: None})
    logp = torch.log_softmax(first.logits.float(), dim=-1)  # (examples, 1 + shared, vocab)
    p = len(shared)
    total = logp[row_ex, p, torch.tensor([s[p] for s in own], device=device)]
    if p:
        total = total + logp[:, torch.arange(p, device=device), torch.tensor(shared, device=device)].sum(1)[row_ex]
    length = max(len(s) for s in own)
    past = first[cache_arg] if cache_arg in first else None
    if past is None and length > p + 1:
        # the backbone returned no KV cache (e.g. gradient checkpointing turns it off): each row decoded whole
        return _full_rows(backbone, tokenizer, encoder_hidden, attention_mask, own, ex_t[row_ex])
    if length > p + 1:
        past.reorder_cache(row_ex)
        dec_in, target = _teacher_forced([s[p:-1] for s in own], [s[p + 1:] for s in own], _pad_id(tokenizer),
                                         device)
        rows = ex_t[row_ex]
        out = backbone(encoder_outputs=BaseModelOutput(last_hidden_state=encoder_hidden[rows]),
                       attention_mask=attention_mask[rows], decoder_input_ids=dec_in,
                       use_cache=True, return_dict=True, **{cache_arg: past})
        total = total - _summed_nll(out.logits, target)
    return total


def _full_rows(backbone, tokenizer, encoder_hidden, attention_mask, own, rows) -> torch.Tensor:
    """Summed log-probabilities of ``own``, one whole teacher-forced row each (no cache)."""
    from transformers.modeling_outputs import BaseModelOutput

    start = decoder_start_id(backbone)
    dec_in, target = _teacher_forced([[start, *s[:-1]] for s in own], own, _pad_id(tokenizer), encoder_hidden.device)
    out = backbone(encoder_outputs=BaseModelOutput(last_hidden_state=encoder_hidden[rows]),
                   attention_mask=attention_mask[rows], decoder_input_ids=dec_in, return_dict=True)
    return -_summed_nll(out.logits, target)


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def score_candidates_shared(backbone, tokenizer, encoder_hidden: torch.Tensor, attention_mask: torch.Tensor,
                            candidates: Sequence[Mapping[str, str]], gold: Sequence[Sequence[str]], *,
                            normalize: str = "mean", keep: Sequence[Sequence[str]] | None = None,
                            max_target_length: int | None = None) -> CandidateScores:
    """:func:`score_candidates` through the core's shared-prefix scorer
    (``score_trie(grad=True)``): the batch's candidates in one Trie, each
    shared prefix decoded once per example, the same scores and gradients.
    A candidate longer than ``max_target_length`` tokens is refused (the
    padded scorer cuts it; cutting a Trie path would merge labels)."""
    from relforge.decoding.decoders import batch_trie
    from relforge.decoding.scoring import score_trie

    _check_inputs(encoder_hidden, candidates, gold, normalize)
    device = encoder_hidden.device
    labels = [[lab for lab in cand if keep is None or lab in set(keep[i])] for i, cand in enumerate(candidates)]
    rows_cands = [{lab: cand[lab] for lab in labs} for cand, labs in zip(candidates, labels)]
    trie, names, mask = batch_trie(tokenizer, rows_cands)
    if max_target_length is not None and int(trie.label_lengths.max()) > max_target_length:
        raise ValueError(f"a candidate has {int(trie.label_lengths.max())} target tokens, more than "
                         f"max_target_length ({max_target_length}): raise model.max_target_length or use "
                         f"loss.scoring: padded")
    sc = score_trie(backbone, trie, encoder_hidden, attention_mask, mask, grad=True)
    value = sc.total / sc.lengths.clamp(min=1).to(sc.total.dtype) if normalize == "mean" else sc.total
    column = {(names[trie.labels[j]], trie.labels[j]): j for j in range(len(trie.labels))}
    by_text = {}
    for (lab, pid), j in column.items():
        by_text.setdefault(lab, []).append(j)
    width = max((len(x) for x in labels), default=0)
    n_rows = len(candidates)
    valid = torch.zeros(n_rows, width, dtype=torch.bool, device=device)
    is_gold = torch.zeros(n_rows, width, dtype=torch.bool, device=device)
    rows, cols, src = [], [], []
    for i, labs in enumerate(labels):
        g = set(gold[i])
        allowed = mask[i]
        for k, lab in enumerate(labs):
            j = next(j for j in by_text[lab] if bool(allowed[j]))  # the row's own (label, text) pair
            valid[i, k] = True
            is_gold[i, k] = lab in g
            rows.append(i)
            cols.append(k)
            src.append(j)
    scores = torch.full((n_rows, width), float("-inf"), device=device, dtype=value.dtype)
    if rows:
        r = torch.tensor(rows, device=device)
        scores = scores.index_put((r, torch.tensor(cols, device=device)), value[r, torch.tensor(src, device=device)])
    return CandidateScores(scores, valid, is_gold, labels)
