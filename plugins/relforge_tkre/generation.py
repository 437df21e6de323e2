"""``tkre.generate``: LLM knowledge generation as the first pretraining stage.

It writes, under ``<run>/tkre-knowledge/``:

* ``explanations.jsonl``: one explanation per few-shot instance (EDKG);
* ``synthetic.jsonl``: the kept schema-constrained examples (SCDG), which
  are also appended to the training split the pipeline fine-tunes on (the
  pipeline computes features after the pretraining stages);
* ``validation.json``: what the validator kept and rejected, and why.

With no ``llm`` configured it generates nothing and records that the run used
no generated knowledge; the later stages then pretrain on the sentences only.
"""
from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import Field

from relforge import progress
from relforge.components import PretrainingStage, REModel, Settings, StageContext, StageResult
from relforge.data.example import Example

from .knowledge import PromptSettings, SyntheticValidator, explanation_prompt, synthetic_prompt
from .llm import ChatRequest, LLMSettings, build_llm
from .stages import knowledge_dir, set_run_tag


class KnowledgeGenerationStage(PretrainingStage):
    """LLM knowledge generation: explanations of the few-shot instances and
    schema-constrained synthetic examples (validated), cached append-only."""

    name = "generate"

    class Settings(Settings):
        #: the LLM backend ({backend: openai|transformers|cache, ...}); null: generate nothing
        llm: LLMSettings | None = None
        #: JSON-lines cache of every answer (reproducible, resumable). Default:
        #: <run>/tkre-knowledge/llm-cache.jsonl; give a fixed path to resume across runs
        cache_path: str | None = None
        explanations: bool = True
        synthetic: bool = True
        #: synthetic-data prompts per relation (each asks for prompts.per_prompt examples)
        synthetic_rounds: int = Field(1, ge=0)
        #: demonstrations per synthetic prompt (the public scripts use 3)
        demonstrations: int = Field(3, gt=0)
        #: at most this many kept synthetic examples per relation (the public scripts keep 8)
        max_synthetic_per_relation: int = Field(8, ge=0)
        #: explain at most this many instances per relation (null: all)
        max_explanations_per_relation: int | None = Field(None, gt=0)
        #: add kept synthetic examples to the fine-tuning set
        add_synthetic_to_train: bool = True
        temperature: float = Field(0.1, ge=0)
        top_p: float = Field(0.95, gt=0, le=1)
        max_tokens: int = Field(1024, gt=0)
        prompts: PromptSettings = Field(default_factory=PromptSettings)

    def run(self, model: REModel, context: StageContext) -> StageResult:
        s = self.settings
        run = context.run
        examples = context.train_examples
        folder = knowledge_dir(context)
        folder.mkdir(parents=True, exist_ok=True)
        if s.llm is None:
            print("tkre.generate: no LLM configured; no generated knowledge (the stages pretrain on the "
                  "task's sentences only)")
            (folder / "generation.json").write_text(json.dumps({"llm": None, "explanations": 0, "synthetic": 0}))
            if run is not None:
                run.log_metrics({"tkre/generate/explanations": 0, "tkre/generate/synthetic_kept": 0}, 0)
                set_run_tag(run, "tkre.llm", "none")
            return StageResult()
        cache_path = Path(s.cache_path) if s.cache_path else folder / "llm-cache.jsonl"
        llm = build_llm(s.llm, cache_path)
        no_rel = model.no_relation
        seed = context.seed
        by_rel: dict[str, list[Example]] = defaultdict(list)
        for ex in examples:
            if ex.meta.get("tkre_synthetic"):
                continue
            for rel in sorted(ex.relations):
                if rel != no_rel:
                    by_rel[rel].append(ex)
        params = {"temperature": s.temperature, "top_p": s.top_p, "max_tokens": s.max_tokens}
        requests: list[ChatRequest] = []
        jobs: list[tuple[str, str, Example | None, list[Example]]] = []
        if s.explanations:
            for rel in sorted(by_rel):
                for ex in by_rel[rel][: s.max_explanations_per_relation]:
                    requests.append(ChatRequest.user(explanation_prompt(ex, rel, s.prompts), **params))
                    jobs.append(("explanation", rel, ex, []))
        types = sorted({t for ex in examples for t in (ex.head.type, ex.tail.type) if t})
        if s.synthetic:
            for rel in sorted(by_rel):
                rng = random.Random(f"{seed}-{rel}")
                for r in range(s.synthetic_rounds):
                    demos = rng.sample(by_rel[rel], min(s.demonstrations, len(by_rel[rel])))
                    requests.append(ChatRequest.user(synthetic_prompt(rel, demos, types, s.prompts),
                                                     sample=r, **params))
                    jobs.append(("synthetic", rel, None, demos))
        print(f"tkre.generate: {len(requests)} LLM request(s) ({sum(j[0] == 'explanation' for j in jobs)} "
              f"explanations, {sum(j[0] == 'synthetic' for j in jobs)} synthetic-data prompts), cache {cache_path}")
        with progress.task("tkre.generate: LLM requests", total=len(requests), unit="requests") as shown:
            answers = llm.complete_many(requests, on_result=lambda i, text: shown.advance(1))
        stats = getattr(llm, "stats", None)
        validator = SyntheticValidator(types, demonstrations=[ex.text for ex in examples])
        explanations, synthetic = [], []
        kept_per_rel: dict[str, int] = defaultdict(int)
        for (kind, rel, ex, _demos), answer in zip(jobs, answers):
            if kind == "explanation":
                explanations.append({"example_id": ex.id, "relation": rel, "head": ex.head.text,
                                     "tail": ex.tail.text, "sentence": ex.text, "explanation": answer.strip()})
                continue
            for line in answer.splitlines():
                if not line.strip():
                    continue
                if kept_per_rel[rel] >= s.max_synthetic_per_relation:
                    break
                new = validator.check(line, rel, example_id=f"tkre-syn-{rel}-{len(synthetic)}")
                if new is not None:
                    synthetic.append(new)
                    kept_per_rel[rel] += 1
        _write_jsonl(folder / "explanations.jsonl", explanations)
        _write_jsonl(folder / "synthetic.jsonl", [ex.to_dict() for ex in synthetic])
        report = {"llm": s.llm.backend, "model": getattr(llm, "model_name", ""), "requests": len(requests),
                  "cache_hits": stats.hits if stats else None, "cache_misses": stats.misses if stats else None,
                  "explanations": len(explanations), "synthetic_kept": len(synthetic),
                  "synthetic_added_to_train": len(synthetic) if s.add_synthetic_to_train else 0,
                  "entity_type_schema": types, "validation": validator.report.to_dict()}
        (folder / "validation.json").write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
        rejected = validator.report.rejected
        print(f"tkre.generate: {len(explanations)} explanations; synthetic kept {len(synthetic)}, rejected "
              f"{sum(rejected.values())} ({dict(rejected)})")
        if run is not None:
            run.log_metrics({"tkre/generate/requests": len(requests), "tkre/generate/explanations": len(explanations),
                             "tkre/generate/synthetic_kept": len(synthetic),
                             "tkre/generate/synthetic_rejected": sum(rejected.values()),
                             **({"tkre/generate/cache_hits": stats.hits, "tkre/generate/cache_misses": stats.misses}
                                if stats else {})}, 0)
            set_run_tag(run, "tkre.llm", f"{s.llm.backend}:{getattr(llm, 'model_name', '')}")
            for name in ("explanations.jsonl", "synthetic.jsonl", "validation.json"):
                run.log_artifact(folder / name, "tkre-knowledge")
        # the pipeline appends them to the training split (the later stages and fine-tuning see them)
        return StageResult(added_examples=synthetic if s.add_synthetic_to_train else [])


def _write_jsonl(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
