"""``build_model`` of the ``etrag`` method (see ``relforge.components.Method``)."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from pydantic import ValidationError

from relforge.config import COMPONENT_SECTIONS

from relforge_etrag.model import ETRAGModel, ETRAGOptions, SpanEncoder


def parse_options(options) -> ETRAGOptions:
    try:
        return ETRAGOptions.model_validate(dict(options or {}))
    except ValidationError as exc:
        lines = [f"model.options.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ValueError("invalid ETRAG options (method etrag):\n  " + "\n  ".join(lines)) from None


def _component(registry, resolved, path: str):
    if path not in resolved.components:
        raise ValueError(f"the etrag model needs `{path}` in the configuration (see `relforge plugins`)")
    name, settings = resolved.components[path]
    return registry.create(COMPONENT_SECTIONS[path], name, settings)


def relation_templates(resolved, registry, labels, label_words) -> dict[str, str]:
    """The data layer's SuRE-style relation templates for ``labels`` (with the
    run's verbalizer override applied). The words are the ones the run was
    given, so no data directory is read here."""
    from relforge.data import build_verbalizer

    ds = resolved.run.data.dataset
    name = registry.create("dataset", ds.name, ds.settings).name if ds is not None else ""
    shim = SimpleNamespace(name=name, default_label_words=lambda labs, _dir: {lab: label_words[lab] for lab in labs})
    return dict(build_verbalizer(shim, labels, resolved.run.data.verbalizer).templates)


def _apply_lora(backbone, lora):
    try:
        import peft
    except ImportError as exc:
        raise ImportError("model.options.lora needs the `peft` package: pip install peft") from exc
    cfg = peft.LoraConfig(task_type=peft.TaskType.SEQ_2_SEQ_LM, r=lora.r, lora_alpha=lora.alpha,
                          lora_dropout=lora.dropout, target_modules=lora.target_modules)
    return peft.get_peft_model(backbone, cfg)


def build_etrag_model(*, resolved, labels, label_words, no_relation, registry, from_folder=None):
    from relforge.models.backbone import load_seq2seq
    from relforge.models.encoder import load_encoder

    run = resolved.run
    if run.model.architecture != "seq2seq":
        raise ValueError(f"etrag needs model.architecture: seq2seq, got {run.model.architecture!r}")
    opts = parse_options(run.model.options)
    template = _component(registry, resolved, "template")
    if not hasattr(template, "bind"):
        raise ValueError("etrag needs a template with relation templates (etrag.sure)")
    specials = tuple(getattr(template, "special_tokens", ()))
    folder = Path(from_folder) if from_folder is not None else None
    if folder is not None and opts.lora is not None:
        import peft

        base, tokenizer = load_seq2seq(run.model.backbone, special_tokens=specials)
        backbone = peft.PeftModel.from_pretrained(base, str(folder / "lora"))
    else:
        backbone, tokenizer = load_seq2seq(str(folder) if folder else run.model.backbone, special_tokens=specials)
        if opts.lora is not None:
            backbone = _apply_lora(backbone, opts.lora)
    span_encoder = None
    retriever = None
    if opts.k > 0:
        enc, enc_tok = load_encoder(str(folder / "retriever") if folder else opts.retriever_backbone)
        span_encoder = SpanEncoder(enc, enc_tok, opts.retriever_max_length)
        retriever = _component(registry, resolved, "retriever")
    templates = {} if folder else relation_templates(resolved, registry, labels, label_words)
    template.bind(templates, no_relation)
    model = ETRAGModel(backbone, tokenizer, template=template, loss=_component(registry, resolved, "loss"),
                       decoder=_component(registry, resolved, "decoder"), retriever=retriever, labels=labels,
                       label_words=label_words, no_relation=no_relation, options=opts, span_encoder=span_encoder,
                       max_source_length=run.model.max_source_length,
                       max_target_length=run.model.max_target_length)
    if folder is not None:
        model.load_state(folder)
    return model
