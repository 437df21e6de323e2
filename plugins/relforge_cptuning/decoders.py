"""The ablation without the Trie constraint: free generation, then the
nearest candidate label.

The backbone generates freely (greedy or beam search, no logits processor);
each generated text, with special tokens such as the sentinels removed, is
mapped to the candidate whose verbalization is most similar
(``difflib.SequenceMatcher`` ratio over the normalised texts). A candidate's
score is the generated sequence's length-normalised log-probability, so the
threshold decision reads it on the same scale as the exact scores.
"""
from __future__ import annotations

import difflib
from collections.abc import Mapping

import torch
from pydantic import Field

from relforge.components import ScoredCandidate, Settings
from relforge.decoding.decoders import BatchedDecoder


class FreeGenerationSettings(Settings):
    #: 1: greedy; more: beam search, every beam mapped to a label
    num_beams: int = Field(1, gt=0)
    batch_size: int = Field(32, gt=0)
    max_source_length: int = Field(512, gt=0)
    max_new_tokens: int = Field(16, gt=0)
    #: a generated text less similar than this to every candidate maps to none
    min_similarity: float = Field(0.0, ge=0, le=1)


def normalise(tokenizer, text: str) -> str:
    """Text as the tokenizer reads it back, special tokens (sentinels) dropped."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return " ".join(tokenizer.decode(ids, skip_special_tokens=True).lower().split())


def nearest_label(text: str, choices: Mapping[str, str]) -> tuple[str | None, float]:
    """(label, similarity) of the choice (label -> normalised words) closest to ``text``."""
    best, best_sim = None, -1.0
    for lab, words in choices.items():
        sim = 1.0 if text == words else difflib.SequenceMatcher(None, text, words).ratio()
        if sim > best_sim:
            best, best_sim = lab, sim
    return best, best_sim


class FreeGenerationDecoder(BatchedDecoder):
    """Unconstrained generation mapped to the nearest candidate label."""

    name = "free_generation"
    Settings = FreeGenerationSettings
    settings: FreeGenerationSettings

    @torch.no_grad()
    def _rank_batch(self, model, tokenizer, sources, candidates):
        s = self.settings
        input_ids, attention_mask = self._encode_sources(model, tokenizer, sources)
        k = s.num_beams
        gen = model.generate(input_ids=input_ids, attention_mask=attention_mask, num_beams=k,
                             num_return_sequences=k, do_sample=False, max_new_tokens=s.max_new_tokens,
                             return_dict_in_generate=True, output_scores=True)
        if k > 1:
            tok_lp = model.compute_transition_scores(gen.sequences, gen.scores, gen.beam_indices,
                                                     normalize_logits=False)
        else:
            tok_lp = model.compute_transition_scores(gen.sequences, gen.scores, normalize_logits=True)
        new = gen.sequences[:, -tok_lp.shape[1]:]
        pad = tokenizer.pad_token_id
        results: list[list[ScoredCandidate]] = []
        for i, cand in enumerate(candidates):
            choices = {lab: normalise(tokenizer, text) for lab, text in cand.items()}
            best: dict[str, ScoredCandidate] = {}
            for r in range(i * k, (i + 1) * k):
                ids = new[r].tolist()
                live = [j for j, t in enumerate(ids) if t != pad]
                n = (live[-1] + 1) if live else 1
                lp = tok_lp[r, :n]
                lp = lp[torch.isfinite(lp)]
                total = float(lp.sum()) if lp.numel() else float("-inf")
                text = " ".join(tokenizer.decode(ids[:n], skip_special_tokens=True).lower().split())
                lab, sim = nearest_label(text, choices)
                if lab is None or sim < s.min_similarity:
                    continue
                score = total / max(1, n)
                if lab not in best or score > best[lab].score:
                    best[lab] = ScoredCandidate(lab, score, total, n)
            results.append(sorted(best.values(), key=lambda c: c.score, reverse=True))
        return results
