"""The core's decoders: Trie-constrained generation, exact scoring, SuRE scoring.

All three take ``candidates[i]``: label -> target text for example ``i``. The
examples of a batch may have different candidate sets (entity-type
constraints) and even different target texts for a label (templates that
mention the entities): the Trie is built over the distinct (label, text)
pairs of the batch and each example is restricted to its own pairs with a
label mask, so nothing is rebuilt per example. Tries are cached per
tokenizer and pair set.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch

from relforge.components import Ability, Decoder, RanksEncoded, ScoredCandidate, Settings
from relforge.decoding.processor import TrieLogitsProcessor
from relforge.decoding.scoring import encode, score_trie
from relforge.decoding.trie import LabelTrie, encode_targets, end_token_id

_TRIE_CACHE: OrderedDict[tuple, LabelTrie] = OrderedDict()
_TRIE_CACHE_SIZE = 16


def batch_trie(tokenizer, candidates: Sequence[Mapping[str, str]]):
    """The Trie over a batch's distinct (label, text) pairs, its pairs (Trie
    label ``str(j)`` is ``pairs[j]``) and the (examples, trie labels) mask."""
    pairs: dict[tuple[str, str], str] = {}
    for cand in candidates:
        for lab, text in cand.items():
            pairs.setdefault((lab, text), str(len(pairs)))
    key = (id(tokenizer), len(tokenizer), tuple(pairs))
    trie = _TRIE_CACHE.get(key)
    if trie is None:
        seqs = encode_targets(tokenizer, {pid: text for (_, text), pid in pairs.items()})
        trie = LabelTrie(seqs, pad_token_id=tokenizer.pad_token_id, end_token_id=end_token_id(tokenizer))
        _TRIE_CACHE[key] = trie
        if len(_TRIE_CACHE) > _TRIE_CACHE_SIZE:
            _TRIE_CACHE.popitem(last=False)
    else:
        _TRIE_CACHE.move_to_end(key)
    names = {pid: lab for (lab, _), pid in pairs.items()}
    mask = trie.label_mask([[pairs[(lab, text)] for lab, text in cand.items()] for cand in candidates])
    return trie, names, mask


def _device(model) -> torch.device:
    return next(model.parameters()).device


class BatchedDecoder(Decoder):
    """A decoder that ranks in batches of ``settings.batch_size`` with the
    model in eval mode (restored afterwards); a subclass implements
    ``_rank_batch(model, tokenizer, sources, candidates)``. Its settings need
    ``batch_size`` and ``max_source_length``."""

    def _rank_batch(self, model: Any, tokenizer: Any, sources: Sequence[str],
                    candidates: Sequence[Mapping[str, str]]) -> list[list[ScoredCandidate]]:
        raise NotImplementedError

    def _batches(self, n: int):
        size = self.settings.batch_size
        return [(i, min(n, i + size)) for i in range(0, n, size)]

    def _encode_sources(self, model, tokenizer, sources):
        enc = tokenizer(list(sources), padding=True, truncation=True,
                        max_length=self.settings.max_source_length, return_tensors="pt")
        dev = _device(model)
        return enc["input_ids"].to(dev), enc["attention_mask"].to(dev)

    def rank(self, model: Any, tokenizer: Any, sources: Sequence[str],
             candidates: Sequence[Mapping[str, str]]) -> list[list[ScoredCandidate]]:
        if len(sources) != len(candidates):
            raise ValueError(f"{len(sources)} sources but {len(candidates)} candidate sets")
        was_training = model.training
        model.eval()
        try:
            out: list[list[ScoredCandidate]] = []
            for a, b in self._batches(len(sources)):
                out.extend(self._rank_batch(model, tokenizer, sources[a:b], candidates[a:b]))
            return out
        finally:
            model.train(was_training)


class _ScoringSettings(Settings):
    batch_size: int = 32
    max_source_length: int = 512
    #: "mean": length-normalised (per token) score; "sum": total
    normalize: Literal["mean", "sum"] = "mean"
    #: decoder rows per chunk of examples (each holds a cross-attention cache)
    max_rows: int = 2048


class ExactScoringDecoder(BatchedDecoder, RanksEncoded):
    """Every candidate's exact log-probability from one batched teacher-forced
    pass over the Trie (see :mod:`relforge.decoding.scoring`). ``score`` is the
    length-normalised log-probability (``normalize: mean``) or the total."""

    name = "exact"
    Settings = _ScoringSettings
    settings: _ScoringSettings
    provides = frozenset({Ability.ENCODED_SCORING})
    _field = "total"

    @torch.no_grad()
    def _rank_batch(self, model, tokenizer, sources, candidates):
        ids, att = self._encode_sources(model, tokenizer, sources)
        return self.rank_encoded(model, tokenizer, encode(model, ids, att), att, candidates)

    @torch.no_grad()
    def rank_encoded(self, model, tokenizer, encoder_hidden, attention_mask, candidates):
        trie, names, mask = batch_trie(tokenizer, candidates)
        exact = self._field == "total" or self.settings.exact_total
        scores = score_trie(model, trie, encoder_hidden, attention_mask, mask, max_rows=self.settings.max_rows,
                            exact=exact)
        value = getattr(scores, self._field).cpu()
        total = scores.total.cpu() if exact else None
        lengths = scores.lengths.cpu()
        allowed = scores.allowed.cpu()
        results = []
        for i in range(len(candidates)):
            ranked = []
            for j in allowed[i].nonzero().flatten().tolist():
                n = int(lengths[j])
                v = float(value[i, j])
                ranked.append(ScoredCandidate(
                    label=names[trie.labels[j]], score=v / n if self.settings.normalize == "mean" else v,
                    total_logprob=None if total is None else float(total[i, j]), num_tokens=n))
            ranked.sort(key=lambda c: c.score, reverse=True)
            results.append(ranked)
        return results


class _SureSettings(_ScoringSettings):
    normalize: Literal["mean", "sum"] = "sum"
    #: also compute the exact total log-probability (decodes every Trie node;
    #: without it only the nodes up to the last branching node are decoded)
    exact_total: bool = False


class SureScoringDecoder(ExactScoringDecoder):
    """SuRE-style scoring: at each branching node of the Trie the probability
    is renormalised over the example's permitted children, and a candidate's
    score is the sum (or mean) of those renormalised log-probabilities;
    ``total_logprob`` is the exact, unrenormalised one when ``exact_total`` is
    set, else None."""

    name = "sure"
    Settings = _SureSettings
    _field = "branch"


class _GenerationSettings(Settings):
    #: 1: greedy search; more: beam search, each beam one ranked candidate
    num_beams: int = 4
    batch_size: int = 32
    max_source_length: int = 512
    #: None: the longest candidate's token count
    max_new_tokens: int | None = None
    length_penalty: float = 1.0
    #: masking backend: auto (CuPy on CUDA when installed, else torch)
    backend: Literal["auto", "torch", "cupy"] = "auto"


class ConstrainedGenerationDecoder(BatchedDecoder):
    """Trie-constrained greedy (``num_beams: 1``) or beam search through
    ``transformers`` ``generate`` with :class:`TrieLogitsProcessor`. Returns the
    candidates the beams reached (at most ``num_beams``), best first; ``score``
    is the beam score (total log-probability / tokens ** length_penalty)."""

    name = "trie-beam"
    Settings = _GenerationSettings

    @torch.no_grad()
    def _rank_batch(self, model, tokenizer, sources, candidates):
        from transformers import LogitsProcessorList

        s = self.settings
        trie, names, mask = batch_trie(tokenizer, candidates)
        ids, att = self._encode_sources(model, tokenizer, sources)
        k = s.num_beams
        proc = TrieLogitsProcessor(trie, num_beams=k, label_mask=mask, backend=s.backend, inplace=k > 1)
        max_new = s.max_new_tokens or int(trie.label_lengths.max())
        # examples with no permitted candidate are not generated for
        live = mask.any(1)
        results: list[list[ScoredCandidate]] = [[] for _ in sources]
        if not bool(live.any()):
            return results
        if not bool(live.all()):
            keep = live.nonzero().flatten()
            ids, att, proc.label_mask = ids[keep.to(ids.device)], att[keep.to(att.device)], mask[keep]
        out = model.generate(
            input_ids=ids, attention_mask=att, num_beams=k, num_return_sequences=k, do_sample=False,
            max_new_tokens=max_new,
            logits_processor=LogitsProcessorList([proc]), return_dict_in_generate=True,
            output_scores=True, output_logits=k == 1,
            **({"length_penalty": s.length_penalty, "early_stopping": True} if k > 1 else {}))
        seqs = out.sequences
        prompt = proc.prompt_len or 1
        if k == 1:
            logp = torch.stack([torch.log_softmax(x.float(), -1) for x in out.logits], 1)
            gen = seqs[:, prompt:prompt + logp.shape[1]]
            tok_lp = logp.gather(2, gen[..., None]).squeeze(-1)
        else:
            tok_lp = model.compute_transition_scores(seqs, out.scores, out.beam_indices, normalize_logits=False)
        rows = live.nonzero().flatten().tolist()
        for r in range(seqs.shape[0]):
            i = rows[r // k]
            gen_ids = seqs[r, prompt:].tolist()
            matched = trie.match(gen_ids)
            if not matched:
                continue  # a dead beam (only possible with fewer candidates than beams)
            n = len(trie.sequences[matched[0]])
            total = float(tok_lp[r, :n].sum())
            if not math.isfinite(total):
                continue
            score = total / (n ** s.length_penalty)
            seen = {c.label for c in results[i]}
            for pid in matched:
                if names[pid] not in seen and mask[rows[r // k], int(trie.label_index[pid])]:
                    results[i].append(ScoredCandidate(names[pid], score, total, n))
        for ranked in results:
            ranked.sort(key=lambda c: c.score, reverse=True)
        return results
