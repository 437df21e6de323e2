"""Candidate scoring with gradients: CPTuning's padded scorer (one teacher-forced row per (example,
candidate) after the positions all candidates share, decoded once per example, in length buckets;
until 2026-12-04 a full row per candidate, the figures of candidate-scoring-cpu-2026-12-04.md),
against the core's shared-prefix scorer
(``score_trie(grad=True)``: each shared prefix decoded once per example), forward and backward,
beside one cross-entropy step over the gold targets (the generative baseline's cost) -- issue #20,
point 1.

The default MiniLM encoder-decoder, NYT's 24 relations verbalized from their Freebase paths (read
from the data directory; every candidate of every row, as the paper's loss scores them), sources of
about 40 tokens. The cases are timed interleaved, round by round, median of the rounds, so the
ratios are side by side on a noisy machine; the scores of the two scorers are checked equal first.

    python benchmarks/perf/candidate_scoring.py [--batch 16] [--rounds 5] [--data-dir ../shared/data]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from common import commit, machine, print_table


def labels_from_nyt(data_dir: Path) -> dict[str, str]:
    rel = json.loads((data_dir / "nyt" / "NYT" / "rel2id.json").read_text())[0]
    names = list(rel.values()) if isinstance(rel, dict) else list(rel)
    return {n: " ".join(n.strip("/").split("/")[-1].split("_")) for n in names}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", type=Path, default=Path(os.environ.get("RELFORGE_DATA_DIR", "../shared/data")))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from relforge.decoding.decoders import batch_trie
    from relforge.decoding.scoring import encode, score_trie
    from relforge.models.backbone import load_seq2seq
    from relforge_cptuning.scoring import TargetCache, score_candidates

    torch.manual_seed(0)
    model, tok = load_seq2seq("minilm")
    model.eval()  # equal dropout-free passes: the comparison is of work, not of noise
    words = labels_from_nyt(a.data_dir)
    sources = [f"The report says that Person {i} founded the company Acme {i} in the city of Place {i} "
               f"many years ago , before moving to another country ." for i in range(a.batch)]
    enc = tok(sources, return_tensors="pt", padding=True)
    candidates = [dict(words) for _ in sources]
    gold = [[next(iter(words))] for _ in sources]
    trie, trie_names, mask = batch_trie(tok, candidates)
    cache = TargetCache()
    gold_ids = cache.ids(tok, [words[g[0]] for g in gold])
    length = max(len(s) for s in gold_ids)
    labels = torch.full((a.batch, length), -100)
    for r, s in enumerate(gold_ids):
        labels[r, :len(s)] = torch.tensor(s)

    def padded():
        hidden = encode(model, enc.input_ids, enc.attention_mask)
        sc = score_candidates(model, tok, hidden, enc.attention_mask, candidates, gold, cache=cache,
                              normalize="sum")
        torch.where(sc.valid, sc.scores, 0.0).sum().backward()
        model.zero_grad()
        return sc

    def shared():
        hidden = encode(model, enc.input_ids, enc.attention_mask)
        sc = score_trie(model, trie, hidden, enc.attention_mask, mask, grad=True)
        torch.where(sc.allowed, sc.total, 0.0).sum().backward()
        model.zero_grad()
        return sc

    def ce():
        out = model(input_ids=enc.input_ids, attention_mask=enc.attention_mask, labels=labels)
        out.loss.backward()
        model.zero_grad()

    a_sc, b_sc = padded(), shared()
    pad_vals = {lab: a_sc.scores[0, j].item() for j, lab in enumerate(a_sc.labels[0])}
    names = {trie_names[trie.labels[j]]: j for j in range(len(trie.labels))}
    diff = max(abs(pad_vals[lab] - b_sc.total[0, names[lab]].item()) for lab in pad_vals if lab in names)
    times = {"ce": [], "padded": [], "shared": []}
    fns = {"ce": ce, "padded": padded, "shared": shared}
    for _ in range(a.rounds):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    info = {"machine": machine(a.threads), "load_1min": round(os.getloadavg()[0], 2), "commit": commit(),
            "batch": a.batch, "candidates": len(words), "trie_nodes": int(trie.num_nodes),
            "candidate_tokens": int(sum(len(s) for s in cache.ids(tok, list(words.values())))),
            "max_score_difference": diff}
    rows = [{"case": k, "seconds": round(v, 3), "vs_ce": round(v / med["ce"], 2)} for k, v in med.items()]
    for r in [info, *rows]:
        print(json.dumps(r))
    print(f"\nmachine: {info['machine']}; load average {info['load_1min']}; commit {info['commit']}; batch {a.batch} x "
          f"{len(words)} candidates ({info['candidate_tokens']} candidate tokens, {info['trie_nodes']} Trie nodes); "
          f"median of {a.rounds} interleaved rounds; largest score difference {diff:.2e}\n")
    print_table(["case (forward + backward)", "seconds", "x one CE step"],
                [[r["case"], r["seconds"], f"{r['vs_ce']}x"] for r in rows])


if __name__ == "__main__":
    main()
