"""LabelTrie structure and the torch masking backend against a naive reference."""
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from relforge.decoding.masking import allowed_mask, apply_mask_, resolve_backend
from relforge.decoding.trie import LabelTrie

PAD, END = 0, 1


def reference_allowed(seqs, allowed_labels, prefix, vocab):
    """Allowed next tokens after ``prefix``, from the label sequences alone."""
    out = torch.zeros(vocab, dtype=torch.bool)
    all_seqs = list(seqs.values())
    n = len(prefix)
    if not any(s[:n] == prefix for s in all_seqs):  # past a complete label, or off the Trie
        out[PAD] = True
        return out
    children = {s[n] for s in all_seqs if len(s) > n and s[:n] == prefix}
    for lab in allowed_labels:
        s = seqs[lab]
        if len(s) > n and s[:n] == prefix:
            out[s[n]] = True
        if s == prefix:
            if not children:
                out[PAD] = True
            elif END not in children:
                out[END] = True
    return out


@st.composite
def tries_and_prefixes(draw):
    n_labels = draw(st.integers(1, 12))
    vocab = draw(st.integers(4, 24))
    end = draw(st.booleans())
    seqs = {}
    for i in range(n_labels):
        body = draw(st.lists(st.integers(2, vocab - 1), min_size=1, max_size=5))
        seqs[f"L{i}"] = body + ([END] if end else [])
    prefixes, subsets = [], []
    for _ in range(draw(st.integers(1, 8))):
        lab = draw(st.sampled_from(sorted(seqs)))
        cut = draw(st.integers(0, len(seqs[lab]) + 1))
        prefixes.append(seqs[lab][:cut] + ([PAD] if cut > len(seqs[lab]) else []))
        subsets.append(draw(st.lists(st.sampled_from(sorted(seqs)), unique=True)))
    return seqs, vocab, prefixes, subsets


def states_for(trie, prefixes):
    return torch.stack([trie.walk(torch.tensor([p], dtype=torch.long))[0] for p in prefixes])


@settings(max_examples=150, deadline=None)
@given(tries_and_prefixes())
def test_torch_masks_equal_naive_reference(case):
    seqs, vocab, prefixes, subsets = case
    trie = LabelTrie(seqs, pad_token_id=PAD, end_token_id=END)
    states = states_for(trie, prefixes)
    lmask = trie.label_mask(subsets)
    cum = LabelTrie.label_cumsum(lmask)
    ref_all = torch.stack([reference_allowed(seqs, list(seqs), p, vocab) for p in prefixes])
    ref_sub = torch.stack([reference_allowed(seqs, s, p, vocab) for p, s in zip(prefixes, subsets)])
    assert torch.equal(allowed_mask(vocab, trie, states, backend="torch"), ref_all)
    assert torch.equal(allowed_mask(vocab, trie, states, label_cum=cum, backend="torch"), ref_sub)
    scores = torch.randn(len(prefixes), vocab)
    masked = apply_mask_(scores.clone(), trie, states, label_cum=cum, backend="torch")
    assert torch.equal(masked, torch.where(ref_sub, scores, float("-inf")))


def test_rows_per_example_maps_rows_to_subsets():
    trie = LabelTrie({"a": [5, END], "b": [6, END], "c": [7, END]}, pad_token_id=PAD, end_token_id=END)
    cum = LabelTrie.label_cumsum(trie.label_mask([["a"], ["b", "c"]]))
    m = allowed_mask(8, trie, torch.zeros(4, dtype=torch.long), label_cum=cum, rows_per_example=2)
    assert m.nonzero().tolist() == [[0, 5], [1, 5], [2, 6], [2, 7], [3, 6], [3, 7]]


def test_prefix_labels_branch_at_the_end_token():
    seqs = {"founder": [10, END], "founder of": [10, 11, END], "founded by": [12, 13, END]}
    trie = LabelTrie(seqs, pad_token_id=PAD, end_token_id=END)
    after_founder = trie.walk(torch.tensor([[10]]))
    assert allowed_mask(14, trie, after_founder)[0].nonzero().flatten().tolist() == [END, 11]
    only_short = LabelTrie.label_cumsum(trie.label_mask([["founder"]]))
    assert allowed_mask(14, trie, after_founder, label_cum=only_short)[0].nonzero().flatten().tolist() == [END]
    assert trie.match([10, END, PAD, PAD]) == ["founder"]
    assert trie.match([10, 11, END]) == ["founder of"]
    assert trie.match([10]) == []


def test_prefix_labels_without_an_end_suffix_get_a_synthetic_end_edge():
    trie = LabelTrie({"a": [5], "ab": [5, 6]}, pad_token_id=PAD, end_token_id=END)
    node = trie.walk(torch.tensor([[5]]))
    assert allowed_mask(8, trie, node)[0].nonzero().flatten().tolist() == [END, 6]
    assert int(trie.walk(torch.tensor([[5, END]]))[0]) == trie.done
    assert bool((trie.label_paths >= 0).sum(1).eq(trie.label_lengths).all())


def test_labels_are_numbered_so_subtrees_are_contiguous():
    seqs = {f"L{i}": [2 + i % 3, 5 + i % 4, END] for i in range(12)}
    trie = LabelTrie(seqs, pad_token_id=PAD, end_token_id=END)
    for e in torch.nonzero(trie.edge_real).flatten().tolist():
        through = {lab for i, lab in enumerate(trie.labels) if e in trie.label_paths[i].tolist()}
        assert set(trie.labels[int(trie.edge_lo[e]):int(trie.edge_hi[e])]) == through


def test_duplicate_texts_share_a_leaf_and_unknown_labels_are_errors():
    trie = LabelTrie({"x": [3, END], "y": [3, END]}, pad_token_id=PAD, end_token_id=END)
    assert sorted(trie.match([3, END])) == ["x", "y"]
    try:
        trie.label_mask([["z"]])
    except KeyError as err:
        assert "z" in str(err)
    else:
        raise AssertionError("unknown label accepted")


def test_from_texts_wraps_prefix_and_end_token(tiny_t5):
    _, tok = tiny_t5
    trie = LabelTrie.from_texts(tok, {"a": "founded by", "b": "founder"}, prefix_ids=[tok.convert_tokens_to_ids("<extra_id_0>")])
    for seq in trie.sequences.values():
        assert seq[0] == tok.convert_tokens_to_ids("<extra_id_0>") and seq[-1] == tok.eos_token_id
    assert tok.decode(trie.sequences["a"][1:-1]) == "founded by"


def test_backend_resolution_on_cpu():
    assert resolve_backend("auto", torch.device("cpu")) == "torch"
    try:
        resolve_backend("cupy", torch.device("cpu"))
    except ValueError as err:
        assert "CUDA" in str(err)
    else:
        raise AssertionError("cupy accepted for a CPU tensor")


def test_public_api_is_reachable_from_the_package():
    import relforge.decoding as decoding

    for name in decoding.__all__:
        assert getattr(decoding, name) is not None
