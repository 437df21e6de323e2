"""Does ETRAG's retrieval work? Neighbour agreement, the spread of the
retriever's space, the logged diagnostics and the oracle probes (issue #17).

``neighbour_label_agreement(model, examples)`` retrieves, for every example,
the k neighbours an ETRAG model would use at inference (from its cached
memory) and reports the share whose gold label is among the query's gold
labels (the no-relation label counts as a label), at rank 1 and over all k,
with the share expected from random neighbours (the memory's label
distribution) beside it. ``similarity_spread(model, examples)`` measures the
space the retriever scores in: the mean cosine similarity of queries to
memory items and of items to items, the per-query standard deviation of the
scores, and the effective number of rows the soft-kNN weights spread over
(exp of their entropy). A space whose items all look alike (similarity near 1,
deviation near 0) gives flat weights: every query then gets the same soft
neighbours, whatever it is.

Command line: before (a freshly built model with the run's configuration,
i.e. the retriever as initialised) and after (the trained model folder)::

    python -m relforge_etrag.analysis runs/<run>/best --split test [--data-dir DIR] [--limit N]

**Logged during every run** (``ReportsDiagnostics``, ``train/retrieval/*``
every ``train.log_every`` steps, ``dev/retrieval/*`` with each dev
evaluation): ``weight_entropy`` and ``effective_rows`` of the soft-kNN
weights, ``top_weight``, ``distinct_neighbours`` (distinct argmax rows over k),
``agreement_top1``/``agreement_at_k`` (label agreement, as above),
``prompt_norm_ratio`` (soft prompts' mean norm over the token embeddings'),
``grad_norm_retriever``/``_projection``/``_generator`` (before clipping).

**Oracle probes** (``model.oracle``, a probe of the generator, not a method:
the neighbours are chosen with the gold labels of the scored examples, in
training and evaluation alike): ``gold`` gives k memory items with one of the
query's gold labels, ``random`` k random items, ``self`` the query's own gold
item (source and gold summary: the leak the method forbids). If ``self`` and
``gold`` do not beat SuRE (``model.k=0``), the soft prompts do not carry what
the generator needs. The suite ``benchmarks/suites/etrag-oracle-probes.yaml``
runs them beside SuRE and the retriever.
"""
from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Sequence

import torch


def agreement_hits(memory_items: Sequence[dict], rows: Sequence[Sequence[int]],
                   golds: Sequence[Sequence[str]]) -> tuple[int, int]:
    """(queries whose first neighbour has one of their gold labels,
    neighbours over all k that do) for memory ``rows`` (one list per query)."""
    top1 = every = 0
    for row, gold in zip(rows, golds):
        gold = set(gold)
        labels = [memory_items[r]["label"] for r in row]
        top1 += labels[0] in gold
        every += sum(lab in gold for lab in labels)
    return top1, every


@torch.no_grad()
def neighbour_label_agreement(model, examples: Sequence, batch_size: int = 32) -> dict[str, float]:
    if model.settings.k == 0:
        raise ValueError("k = 0: the model retrieves nothing")
    was = model.training
    model.eval()
    hits_top1 = hits_all = total = 0
    try:
        for a in range(0, len(examples), batch_size):
            feats = model.features(examples[a:a + batch_size], training=False)
            _, rows = model.retrieve_cached([f["source"] for f in feats], [f["extra"] for f in feats])
            top1, every = agreement_hits(model.memory_items, rows.tolist(), [f["gold"] for f in feats])
            hits_top1, hits_all, total = hits_top1 + top1, hits_all + every, total + rows.numel()
    finally:
        model.train(was)
    n = len(examples)
    freq = Counter(it["label"] for it in model.memory_items)
    m = sum(freq.values())
    chance = sum(sum(freq[g] for g in (sorted(ex.relations) or [model.no_relation])) / m for ex in examples) / n
    return {"examples": n, "k": model.settings.k, "agreement_top1": hits_top1 / n,
            "agreement_at_k": hits_all / total, "chance": chance}


@torch.no_grad()
def similarity_spread(model, examples: Sequence, batch_size: int = 32) -> dict[str, float]:
    """The spread of the retriever's space over the cached memory (see the
    module docstring): mean query-memory and memory-memory cosine
    similarity, the per-query standard deviation and range of the
    similarities, and the soft-kNN weights' effective rows at rank 1."""
    from relforge.retrieval import mean_cosine_similarity

    if model.settings.k == 0:
        raise ValueError("k = 0: the model retrieves nothing")
    was = model.training
    model.eval()
    sims, eff = [], []
    try:
        model.ensure_cache()
        mem = model.memory_cache
        for a in range(0, len(examples), batch_size):
            feats = model.features(examples[a:a + batch_size], training=False)
            q = model.encode_queries([f["source"] for f in feats], [f["extra"] for f in feats])
            sims.append(mean_cosine_similarity(q, mem.to(q.device)).cpu())
            w = model.retriever.retrieve(q, mem.to(q.device), 1).weights[:, 0].float()
            eff.append((-(w * w.clamp_min(1e-12).log()).sum(-1)).exp().cpu())
        sample = mem[: min(len(mem), 256)]
        inner = mean_cosine_similarity(sample, mem)
        inner = inner[~torch.eye(len(sample), len(mem), dtype=torch.bool)]
    finally:
        model.train(was)
    sim = torch.cat(sims)
    return {"memory_rows": len(mem), "query_memory_similarity": float(sim.mean()),
            "query_similarity_std": float(sim.std(1).mean()),
            "query_similarity_range": float((sim.max(1).values - sim.min(1).values).mean()),
            "memory_memory_similarity": float(inner.mean()), "effective_rows": float(torch.cat(eff).mean())}


@torch.no_grad()
def prompt_attention(model, examples: Sequence, batch_size: int = 16) -> dict[str, float]:
    """Whether the generator reads the soft prompts: the share of the
    decoder's cross-attention (mean over layers, heads and gold target tokens,
    teacher-forced) that falls on the prompt positions, beside the share the
    prompts hold of the attended positions (what attention blind to content
    would give them), and how flat the layer- and head-averaged attention
    is (its entropy over log of the attended positions; 1 = uniform).
    Evaluation mode, as at inference (an oracle probe's neighbours
    included)."""
    if model.settings.k == 0:
        raise ValueError("k = 0: the model has no soft prompts")
    backbone = model.backbone
    was = model.training
    model.eval()
    old_impl = getattr(backbone.config, "_attn_implementation", None)
    setter = getattr(backbone, "set_attn_implementation", None)
    if setter is not None:
        setter("eager")  # scaled-dot-product kernels return no weights
    on_prompts = positions = weight = flatness = 0.0
    try:
        for a in range(0, len(examples), batch_size):
            # scoring features (one per example, its first gold target): training ones would refit the
            # template and replace the memory with these examples
            feats = model.features(examples[a:a + batch_size], training=False)
            batch = model.collate(feats)
            dev = next(backbone.parameters()).device
            inputs = model.prompted_inputs(batch.input_ids.to(dev), batch.attention_mask.to(dev), batch.sources,
                                           [r["extra"] for r in batch.rows], batch.rows)
            out = backbone(**inputs, labels=batch.labels.to(dev), output_attentions=True)
            cross = torch.stack([c.float() for c in out.cross_attentions]).mean((0, 2))  # (B, T, S)
            p = (1 + model.settings.k) * 3
            start = 0 if model.settings.insert == "prepend" else 1
            tgt = (batch.labels.to(dev) != -100).float()  # (B, T)
            share = cross[:, :, start:start + p].sum(-1)  # (B, T)
            on_prompts += float((share * tgt).sum())
            att = inputs["attention_mask"].float()
            positions += float((p / att.sum(-1))[:, None].mul(tgt).sum())
            weight += float(tgt.sum())
            # entropy of the attention over the attended positions / log(their number): 1 = uniform
            ent = -(cross * cross.clamp_min(1e-12).log()).sum(-1)  # (B, T)
            flatness += float((ent / att.sum(-1).log()[:, None]).mul(tgt).sum())
    finally:
        if setter is not None and old_impl is not None:
            setter(old_impl)
        model.train(was)
    return {"cross_attention_on_prompts": on_prompts / weight, "prompt_share_of_positions": positions / weight,
            "cross_attention_flatness": flatness / weight}


def before_after(folder, split: str = "test", data_dir=None, limit: int | None = None) -> dict[str, dict]:
    """Agreement of a freshly initialised model (same configuration) and of the trained one."""
    from accelerate.utils import set_seed

    from relforge.data import load_data
    from relforge.engine.build import build_model, load_saved
    from relforge.registry import get_registry

    registry = get_registry()
    trained, resolved, meta = load_saved(folder, registry=registry)
    data = load_data(resolved.run.data, registry, data_dir=data_dir)
    if split not in data.splits:
        raise ValueError(f"split {split!r} is not in the run's data (have {sorted(data.splits)})")
    examples = data.splits[split][:limit] if limit else data.splits[split]
    set_seed(resolved.run.seed)
    fresh = build_model(resolved, labels=meta["labels"], label_words=meta["label_words"],
                        no_relation=meta["no_relation"], registry=registry)
    fresh.set_memory(data.splits["train"])
    return {"before": {**neighbour_label_agreement(fresh, examples), **similarity_spread(fresh, examples)},
            "after": {**neighbour_label_agreement(trained, examples), **similarity_spread(trained, examples)}}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m relforge_etrag.analysis", description=__doc__.split("\n\n")[0])
    p.add_argument("model_dir", help="a model folder an etrag run saved (runs/<run>/best)")
    p.add_argument("--split", default="test")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--output", default=None, help="write the JSON here as well")
    a = p.parse_args(argv)
    result = before_after(a.model_dir, a.split, a.data_dir, a.limit)
    text = json.dumps(result, indent=2)
    print(text)
    if a.output:
        with open(a.output, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
