"""CPU inference throughput: ``Extractor.predict`` (what ``relforge predict`` runs) against a plain
transformers forward loop over the same backbone, with and without length-bucketed batches and with
dynamic int8 quantisation (issue #20, point 4).

Trains (or takes with --model) a marker-classifier model on the embedded quickstart data, makes N
input records of mixed lengths, and times, interleaved round by round in one process (so the ratios
are side by side on a noisy machine):

* ``plain``: ``AutoModel`` forward passes of the backbone encoder over the same texts, in input
  order (no markers, no head, no decisions: the floor any pipeline on that backbone pays);
* ``relforge``: ``Extractor.predict`` in input-order batches (``by_length=False``: before bucketing);
* ``bucketed``: ``Extractor.predict`` as shipped (length-sorted batches, ``inference_mode``);
* ``int8``: the same after ``Extractor.quantize("int8")``, with the share of records whose predicted
  relations equal the float model's;
* ``onnx``: the same with the encoder on ONNX Runtime (``runtime="onnx"``; needs ``relforge[onnx]``;
  exported into a temporary cache first, not timed), with the same agreement.

Prints JSON lines and a Markdown table with the machine, the load and the commit.

    python benchmarks/perf/inference.py [--records 1000] [--batch-size 32] [--model runs/<run>]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import commit, machine

import torch


def make_records(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    names = ["Ada Quill", "Bram Tolle", "Cora Venn", "Dov Arle", "Vexa Labs", "Norport", "Lisk", "Tormont"]
    verbs = ["was born in", "works for", "visited", "founded", "lives near"]
    fill = ["quietly", "again", "last year", "with friends", "according to the report", "in the spring"]
    out = []
    for i in range(n):
        h, t = rng.sample(names, 2)
        pre = " ".join(rng.choice(fill) for _ in range(rng.randint(0, 12)))
        post = " ".join(rng.choice(fill) for _ in range(rng.randint(0, 12)))
        text = f"{h} {pre} {rng.choice(verbs)} {t} {post} ."
        ts = text.index(t, len(h))
        out.append({"id": f"x{i}", "text": text, "head": {"start": 0, "end": len(h), "type": "PER"},
                    "tail": {"start": ts, "end": ts + len(t), "type": "LOC"}})
    return out


def interleaved(fns: dict, rounds: int) -> dict:
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: sorted(v)[len(v) // 2] for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", default=None, help="a run or model folder (default: train a small one first)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from transformers import AutoModel

    from relforge.engine.extractor import Extractor

    with tempfile.TemporaryDirectory() as tmp:
        model = a.model
        if model is None:
            subprocess.run([sys.executable, "-m", "relforge", "--quiet", "train", "method=marker_classifier",
                            "data.dataset=quickstart", "train.epochs=2", "model.max_source_length=96",
                            "tracking.trackers=[]", "--output-dir", str(Path(tmp) / "run")], check=True,
                           capture_output=True)
            model = str(Path(tmp) / "run")
        records = make_records(a.records)
        ex = Extractor.from_pretrained(model, device="cpu")
        q = Extractor.from_pretrained(model, device="cpu", quantize="int8")
        from relforge.components import HasEncoder
        from relforge.engine.onnx_runtime import missing_dependency

        # the ONNX case needs relforge[onnx] and an encoder model (seq2seq models are refused)
        o = Extractor.from_pretrained(model, device="cpu").use_onnx(cache_dir=Path(tmp) / "onnx") \
            if missing_dependency() is None and isinstance(ex.model, HasEncoder) else None
        backbone_path = (ex.meta.get("config", {}).get("model") or {}).get("backbone")
        encoder = ex.model.encoder if hasattr(ex.model, "encoder") else None
        tok = ex.model.tokenizer
        plain = AutoModel.from_config(encoder.config).eval() if encoder is not None else None
        if plain is not None:
            plain.load_state_dict(encoder.state_dict(), strict=False)
        texts = [r["text"] for r in records]
        max_len = getattr(ex.model, "max_source_length", 128)

        def run_plain():
            with torch.inference_mode():
                for i in range(0, len(texts), a.batch_size):
                    enc = tok(texts[i:i + a.batch_size], padding=True, truncation=True, max_length=max_len,
                              return_tensors="pt")
                    plain(**enc)

        fns = {"plain": run_plain} if plain is not None else {}  # the floor is measured for encoder models
        fns |= {"relforge": lambda: ex.predict(records, batch_size=a.batch_size, by_length=False),
               "bucketed": lambda: ex.predict(records, batch_size=a.batch_size),
                "int8": lambda: q.predict(records, batch_size=a.batch_size)}
        if o is not None:
            fns["onnx"] = lambda: o.predict(records, batch_size=a.batch_size)
        med = interleaved(fns, a.rounds)
        floats = ex.predict(records, batch_size=a.batch_size)
        in_order = ex.predict(records, batch_size=a.batch_size, by_length=False)
        quant = q.predict(records, batch_size=a.batch_size)
        on_ort = o.predict(records, batch_size=a.batch_size) if o is not None else None
    agree_bucket = sum(x["relations"] == y["relations"] for x, y in zip(floats, in_order)) / len(records)
    agree_int8 = sum(x["relations"] == y["relations"] for x, y in zip(floats, quant)) / len(records)
    agree_onnx = sum(x["relations"] == y["relations"] for x, y in zip(floats, on_ort)) / len(records) \
        if on_ort is not None else None
    score_diff = max(abs(x["scores"][k] - y["scores"].get(k, float("inf"))) for x, y in zip(floats, on_ort)
                     for k in x["scores"]) if on_ort is not None else float("nan")
    info = {"machine": machine(a.threads), "load_1min": round(os.getloadavg()[0], 2), "commit": commit(),
            "records": a.records, "batch_size": a.batch_size, "backbone": str(backbone_path),
            "onnx_max_score_difference": score_diff}
    rows = []
    for k, sec in med.items():
        rows.append({"case": k, "seconds": round(sec, 3), "examples_per_s": round(a.records / sec, 1),
                     "vs_plain": round(med["plain"] / sec, 3) if "plain" in med else None,
                     "agreement_with_bucketed_float": {"relforge": agree_bucket, "bucketed": 1.0,
                                                       "int8": agree_int8, "onnx": agree_onnx}.get(k)})
    for r in [info, *rows]:
        print(json.dumps(r))
    print(f"\nmachine: {info['machine']}; load average {info['load_1min']}; commit {info['commit']}; "
          f"{a.records} records, batch {a.batch_size}, median of {a.rounds} interleaved rounds; largest score "
          f"difference onnx vs torch {score_diff:.1e}\n")
    print("| case | seconds | examples/s | speed vs plain forward loop | predictions equal to bucketed float |")
    print("|---|---|---|---|---|")
    for r in rows:
        agree = "" if r["agreement_with_bucketed_float"] is None else f"{r['agreement_with_bucketed_float']:.1%}"
        print(f"| {r['case']} | {r['seconds']} | {r['examples_per_s']} | {r['vs_plain']}x | {agree} |")


if __name__ == "__main__":
    main()
