"""The retrievers: Plötz and Roth's soft kNN, hard top-k, random; memory search."""
import pytest
import torch

from relforge.registry import get_registry
from relforge_etrag.retrievers import (HardTopKRetriever, MemorySearch, RandomRetriever, SoftKNNRetriever,
                                       log1m_softmax, mean_cosine_similarity, soft_knn_weights)


def _data(b=3, m=12, s=3, h=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, s, h, generator=g), torch.randn(m, s, h, generator=g)


def test_registered():
    reg = get_registry()
    for name in ("etrag.soft_knn", "etrag.topk", "etrag.random"):
        assert reg.get("retriever", name).name == name.split(".")[1]
    assert reg.method("etrag").defaults["model"]["name"] == "etrag.rag"
    assert reg.get("model", "etrag.rag").factory.name == "rag"


def test_mean_cosine_is_mean_of_per_span_cosines():
    q, m = _data()
    ref = torch.stack([torch.nn.functional.cosine_similarity(q[:, None, j], m[None, :, j], dim=-1)
                       for j in range(q.shape[1])]).mean(0)
    assert torch.allclose(mean_cosine_similarity(q, m), ref, atol=1e-6)


def test_soft_knn_weights_sum_to_one_per_step():
    scores = torch.randn(4, 20)
    w = soft_knn_weights(scores, k=6, temperature=0.5)
    assert w.shape == (4, 6, 20)
    assert torch.allclose(w.sum(-1), torch.ones(4, 6), atol=1e-5)
    assert (w >= 0).all()


def test_soft_knn_recursion_matches_the_formula():
    scores = torch.randn(2, 7)
    t = 0.7
    s = scores.clone()
    expected = []
    for _ in range(3):
        w = torch.softmax(s / t, -1)
        expected.append(w)
        s = s + torch.log(1 - w)
    assert torch.allclose(soft_knn_weights(scores, 3, t), torch.stack(expected, 1), atol=1e-6)


def test_temperature_once_up_front_would_not_approach_hard_topk():
    # why the temperature divides inside every softmax: with s_1 = scores / t
    # and w_i = softmax(s_i), two rows always get w_2 = (1/2, 1/2)
    for t in (1.0, 0.1, 0.01):
        s = torch.tensor([1.0, 0.5], dtype=torch.float64) / t
        w1 = torch.softmax(s, -1)
        w2 = torch.softmax(s + log1m_softmax(s), -1)  # log(1 - w1), computed stably
        assert torch.allclose(w2, torch.tensor([0.5, 0.5], dtype=torch.float64))
    hard = soft_knn_weights(torch.tensor([[1.0, 0.5]]), 2, 0.01)
    assert torch.allclose(hard, torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]), atol=1e-6)


def test_soft_knn_approaches_hard_topk_as_temperature_falls():
    g = torch.Generator().manual_seed(1)
    # distinct scores at least 0.05 apart, so the top-k is well defined
    scores = torch.stack([torch.randperm(30, generator=g).float() * 0.05 for _ in range(5)])
    top = scores.topk(4, dim=-1).indices
    hard = torch.zeros(5, 4, 30).scatter_(2, top[..., None], 1.0)
    temps = (1.0, 0.1, 0.01, 0.001)
    mean_gap = [float((soft_knn_weights(scores, 4, t) - hard).abs().mean()) for t in temps]
    assert all(a > b for a, b in zip(mean_gap, mean_gap[1:]))
    assert float((soft_knn_weights(scores, 4, 0.001) - hard).abs().max()) < 1e-6
    assert torch.equal(soft_knn_weights(scores, 4, 0.001).argmax(-1), top)


def test_log1m_softmax_exact_and_finite():
    s = torch.randn(4, 9, dtype=torch.float64)
    assert torch.allclose(log1m_softmax(s), torch.log(1 - torch.softmax(s, -1)), atol=1e-10)
    big = torch.tensor([[200.0, 0.0, -1.0]])
    assert torch.isinf(torch.log(1 - torch.softmax(big, -1))).any()  # the unguarded form fails here
    guarded = log1m_softmax(big)
    assert torch.isfinite(guarded).all()
    assert torch.allclose(guarded[0, 0], torch.logsumexp(torch.tensor([0.0, -1.0]), 0) - 200.0, atol=1e-4)


def test_log_guard_keeps_low_temperature_finite():
    scores = torch.tensor([[5.0, 0.0, -1.0, -2.0]], requires_grad=True)
    w = soft_knn_weights(scores, 3, temperature=1e-4)
    assert torch.isfinite(w).all()
    (w * torch.arange(4.0)).sum().backward()
    assert torch.isfinite(scores.grad).all()


def test_gradients_reach_query_and_memory():
    q, m = _data()
    q.requires_grad_(True)
    m.requires_grad_(True)
    r = SoftKNNRetriever(SoftKNNRetriever.Settings(temperature=0.3)).retrieve(q, m, 3)
    assert r.neighbours.shape == (3, 3, 3, 8)
    r.neighbours.pow(2).sum().backward()
    assert q.grad is not None and q.grad.abs().sum() > 0  # through the weights
    assert m.grad is not None and m.grad.abs().sum() > 0


def test_gradcheck_soft_knn():
    q, m = _data(b=2, m=5, s=2, h=3)
    q = q.double().requires_grad_(True)
    m = m.double().requires_grad_(True)
    ret = SoftKNNRetriever()
    assert torch.autograd.gradcheck(lambda a, b: ret.retrieve(a, b, 2).neighbours, (q, m))


@pytest.mark.parametrize("cls", [SoftKNNRetriever, HardTopKRetriever, RandomRetriever])
def test_self_exclusion(cls):
    q, m = _data(b=4, m=6)
    m[:4] = q  # each query's own instance is in the memory (row i), the nearest possible
    r = cls().retrieve(q, m, 5, exclude=torch.arange(4))
    for i in range(4):
        assert float(r.weights[i, :, i].abs().max()) == 0.0
        assert i not in r.indices[i].tolist()
    if cls is not RandomRetriever:  # without exclusion each query finds itself first
        assert cls().retrieve(q, m, 1).indices[:, 0].tolist() == [0, 1, 2, 3]


def test_exclusion_mask_and_too_few_rows():
    q, m = _data(b=2, m=4)
    mask = torch.tensor([[True, True, False, False], [False, False, False, True]])
    r = SoftKNNRetriever().retrieve(q, m, 2, exclude=mask)
    assert float(r.weights[mask[:, None, :].expand_as(r.weights)].abs().max()) == 0.0
    with pytest.raises(ValueError, match="only 2 memory rows"):
        HardTopKRetriever().retrieve(q, m, 3, exclude=mask)
    with pytest.raises(ValueError, match="k must be at least 1"):
        HardTopKRetriever().retrieve(q, m, 0)


def test_hard_topk_is_the_nearest():
    q, m = _data(m=30)
    r = HardTopKRetriever().retrieve(q, m, 4)
    assert torch.equal(r.indices, mean_cosine_similarity(q, m).topk(4, -1).indices)
    assert torch.equal(r.neighbours, m[r.indices])
    assert torch.allclose(r.weights.sum(-1), torch.ones(3, 4))


def test_memory_search_torch_matches_brute_force():
    q, m = _data(b=5, m=100)
    sims, idx = MemorySearch(m, chunk=17).search(q, 7)
    ref = mean_cosine_similarity(q, m).topk(7, -1)
    assert torch.equal(idx, ref.indices)
    assert torch.allclose(sims, ref.values, atol=1e-5)


def test_memory_search_faiss_matches_torch():
    pytest.importorskip("faiss")
    q, m = _data(b=5, m=100)
    s1, i1 = MemorySearch(m, "faiss").search(q, 6)
    s2, i2 = MemorySearch(m, "torch").search(q, 6)
    assert torch.equal(i1, i2)
    assert torch.allclose(s1, s2, atol=1e-5)


def test_standardize_centres_and_scales_the_unmasked_scores():
    from relforge_etrag.retrievers import standardize

    s = torch.tensor([[0.90, 0.95, 0.91, 0.97], [0.5, 0.5, 0.5, 0.5]])
    mask = torch.tensor([[False, False, True, False], [False, False, False, False]])
    z = standardize(s, mask)
    kept = z[0][~mask[0]]
    assert kept.mean().abs() < 1e-5 and (kept.pow(2).mean() - 1).abs() < 1e-3
    assert z[0, 2] == s[0, 2]  # masked: left for the caller to mask
    assert torch.isfinite(z[1]).all() and z[1].abs().max() < 1e-3  # equal scores: finite, all zero
    # invariant to the scale and offset of the scores (what collapse changes)
    assert torch.allclose(standardize(5 * s + 3), standardize(s), atol=1e-4)


def test_standardized_scores_keep_selecting_when_the_vectors_collapse():
    """A retriever trained end to end made every span vector alike (mean cosine
    0.96 between any two): distance scores then give flat weights at any
    usable temperature; standardized ones still pick the nearest rows."""
    g = torch.Generator().manual_seed(0)
    base = torch.randn(1, 3, 16, generator=g)
    memory = base + 0.05 * torch.randn(40, 3, 16, generator=g)  # collapsed: all alike
    query = memory[7:8] + 0.01 * torch.randn(1, 3, 16, generator=g)  # nearest: row 7
    flat = SoftKNNRetriever(SoftKNNRetriever.Settings(temperature=0.05)).retrieve(query, memory, 3)
    sharp = SoftKNNRetriever(SoftKNNRetriever.Settings(temperature=0.1, scores="standardized")).retrieve(
        query, memory, 3)
    assert flat.weights[0, 0].max() < 3 / 40  # near-uniform over the 40 rows
    assert sharp.weights[0, 0].max() > 0.9 and int(sharp.indices[0, 0]) == 7
    # gradients still reach the query and the memory, finite
    q, m = query.clone().requires_grad_(), memory.clone().requires_grad_()
    r = SoftKNNRetriever(SoftKNNRetriever.Settings(temperature=0.1, scores="standardized")).retrieve(
        q, m, 3, exclude=torch.tensor([7]))
    r.neighbours.sum().backward()
    assert torch.isfinite(q.grad).all() and q.grad.abs().sum() > 0 and torch.isfinite(m.grad).all()
    assert 7 not in r.indices[0].tolist()
