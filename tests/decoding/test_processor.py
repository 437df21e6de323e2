"""TrieLogitsProcessor under real greedy and beam search."""
import torch
from transformers import LogitsProcessorList

from relforge.decoding.processor import TrieLogitsProcessor
from relforge.decoding.trie import LabelTrie

from .conftest import RELATIONS, SOURCES


class CheckingProcessor(TrieLogitsProcessor):
    """Asserts at every step that the incrementally tracked state equals the
    state obtained by walking each row's tokens from the root."""

    def states_for(self, input_ids):
        prev = self._prev_ids
        if prev is not None and prev.shape[1] == input_ids.shape[1] - 1 and prev.shape[1] > self.prompt_len:
            self.reordered = getattr(self, "reordered", 0) + int(not torch.equal(prev, input_ids[:, :-1]))
        states = super().states_for(input_ids)
        walked = self.trie.walk(input_ids[:, self.prompt_len:])
        assert torch.equal(states, walked)
        self.steps = getattr(self, "steps", 0) + 1
        return states


def _generate(model, tok, trie, proc, k, n=len(SOURCES)):
    enc = tok(SOURCES[:n], return_tensors="pt", padding=True)
    with torch.no_grad():
        return model.generate(**enc, num_beams=k, num_return_sequences=k, do_sample=False,
                              max_new_tokens=int(trie.label_lengths.max()) + 2,
                              logits_processor=LogitsProcessorList([proc]))


def test_beam_search_emits_only_candidates_and_tracks_reordered_beams(seq2seq):
    model, tok = seq2seq
    trie = LabelTrie.from_texts(tok, {r: r for r in RELATIONS})
    for k in (1, 3, 6):
        proc = CheckingProcessor(trie, num_beams=k)
        out = _generate(model, tok, trie, proc, k)
        assert proc.steps > 2 and proc.fallback_walks == 0
        if k > 1:
            assert getattr(proc, "reordered", 0) > 0  # the test exercised beam reordering
        for row in out:
            assert len(trie.match(row[1:].tolist())) == 1, tok.decode(row)
        # beams of one example are distinct candidates
        for i in range(len(SOURCES)):
            labs = [trie.match(r[1:].tolist())[0] for r in out[i * k:(i + 1) * k]]
            assert len(set(labs)) == k


def test_beam_search_respects_per_example_subsets(seq2seq):
    model, tok = seq2seq
    trie = LabelTrie.from_texts(tok, {r: r for r in RELATIONS})
    subsets = [["founder", "founder of"], ["city of birth", "no relation", "spouse"], None, ["children"]]
    proc = CheckingProcessor(trie, num_beams=2, label_mask=trie.label_mask(subsets))
    out = _generate(model, tok, trie, proc, 2)
    for r, row in enumerate(out):
        (lab,) = trie.match(row[1:].tolist())
        sub = subsets[r // 2]
        assert sub is None or lab in sub
    # an example with a single permitted label gets it on the first beam
    assert trie.match(out[6][1:].tolist()) == ["children"]


def test_processor_recovers_from_unrelated_inputs_by_walking():
    trie = LabelTrie({"a": [5, 6, 1], "b": [5, 7, 1]}, pad_token_id=0, end_token_id=1)
    proc = TrieLogitsProcessor(trie, num_beams=2)
    proc(torch.tensor([[9], [9]]), torch.zeros(2, 10))
    out = proc(torch.tensor([[9, 5, 7], [9, 5, 6]]), torch.zeros(2, 10))  # skipped a step
    assert proc.fallback_walks == 1
    assert out[0].isfinite().nonzero().flatten().tolist() == [1]
    swapped = proc(torch.tensor([[9, 5, 6, 1], [9, 5, 7, 1]]), torch.zeros(2, 10))  # beams swapped
    assert proc.fallback_walks == 1
    assert swapped.isfinite().nonzero().tolist() == [[0, 0], [1, 0]]


def test_not_inplace_leaves_the_input_alone():
    trie = LabelTrie({"a": [5, 1]}, pad_token_id=0, end_token_id=1)
    scores = torch.zeros(1, 8)
    out = TrieLogitsProcessor(trie, inplace=False)(torch.tensor([[0]]), scores)
    assert scores.isfinite().all() and out.isfinite().sum() == 1


def test_sentinel_prefix_is_generated_before_every_label(tiny_t5):
    model, tok = tiny_t5
    sentinel = tok.convert_tokens_to_ids("<extra_id_0>")
    trie = LabelTrie.from_texts(tok, {r: r for r in RELATIONS[:6]}, prefix_ids=[sentinel])
    proc = CheckingProcessor(trie, num_beams=3)
    out = _generate(model, tok, trie, proc, 3, n=2)
    assert bool((out[:, 1] == sentinel).all())
    assert all(len(trie.match(row[1:].tolist())) == 1 for row in out)
