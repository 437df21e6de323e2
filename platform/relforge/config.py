"""Run configuration: YAML files merged with OmegaConf, validated with pydantic.

Order of precedence, lowest first: the selected method's defaults, then each
configuration file in order, then ``key=value`` overrides. ``${...}``
interpolation is resolved after merging. The result is validated twice: the
run-level schema (:class:`RunConfig`) and then the settings model of every
component the configuration selects, so that an unknown key or a wrong type
is reported with its full key path and the component it belongs to.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from relforge.components import COMPONENT_SECTIONS, LIST_SECTIONS, ComponentKind, ModelSettings
from relforge.engine.precision import Mode as PrecisionMode
from relforge.validation import ConfigError, format_validation_error, validate_settings

__all__ = ["ConfigError", "format_validation_error", "validate_settings", "load_config", "validate_config",
           "ResolvedConfig", "RunConfig", "COMPONENT_SECTIONS"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ComponentRef(BaseModel):
    """``{name: <component>, <setting>: <value>, ...}``; a bare string is
    shorthand for ``{name: <component>}``."""

    model_config = ConfigDict(extra="allow")
    name: str

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def _coerce_ref(value: Any) -> Any:
    if isinstance(value, str):
        return {"name": value}
    return value


class DataConfig(_Strict):
    dataset: ComponentRef | None = None
    #: folder holding the data sets; falls back to $RELFORGE_DATA_DIR
    data_dir: str | None = None
    train_split: str | None = "train"
    dev_split: str | None = "dev"
    test_split: str | None = "test"
    #: optional split transformation (K-shot, ratio, ...), interpreted by the data layer
    sampling: dict[str, Any] = Field(default_factory=dict)
    #: a verbalizer override file (label -> words), YAML or JSON
    verbalizer: str | None = None

    @property
    def dataset_name(self) -> str:
        """The data set's registered name ("" when none is set), as runs are tagged."""
        return self.dataset.name if self.dataset else ""

    @field_validator("dataset", mode="before")
    @classmethod
    def _dataset_ref(cls, v: Any) -> Any:
        return _coerce_ref(v)

    @field_validator("sampling")
    @classmethod
    def _sampling(cls, v: dict[str, Any]) -> dict[str, Any]:
        # validated when the config is loaded, not only when the data is read
        from relforge.sampling import parse_sampling

        parse_sampling(v)
        return v


#: keys of the old ``model`` section (before models were registered components)
_LEGACY_MODEL_KEYS = {
    "architecture": "model.architecture is gone: pick a registered model with model.name "
                    "(relforge.seq2seq, relforge.marker_classifier, etrag.rag; see `relforge plugins`)",
    "options": "model.options is gone: a model's options are its own settings, e.g. model.k=5 instead of "
               "model.options.k=5 (see `relforge plugins` for the model's settings)",
    "tokenizer": "model.tokenizer is gone: the tokenizer is the backbone's (model.backbone)",
}


class TrainConfig(_Strict):
    epochs: float = Field(3, gt=0)
    max_steps: int | None = Field(None, gt=0)
    batch_size: int = Field(16, gt=0)
    eval_batch_size: int = Field(32, gt=0)
    gradient_accumulation_steps: int = Field(1, gt=0)
    learning_rate: float = Field(5e-5, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.0, ge=0, le=1)
    max_grad_norm: float | None = Field(1.0, gt=0)
    #: autocast for the training steps: no, bf16 (GPU, or a CPU with bf16 instructions), fp16 (GPU), auto
    #: (bf16 where the device has it natively, else no); evaluation stays in full precision (engine/precision.py)
    mixed_precision: PrecisionMode = "no"
    lr_schedule: Literal["linear", "cosine", "constant"] = "linear"
    #: evaluate on dev every epoch, every N optimizer steps, or once at the end ("end": the final model is
    #: the selected one; no early stopping)
    eval_every: Literal["epoch", "end"] | Annotated[int, Field(gt=0)] = "epoch"
    #: write the resumable checkpoint every epoch, or every N optimizer steps
    save_every: Literal["epoch"] | Annotated[int, Field(gt=0)] = "epoch"
    early_stopping_patience: int | None = Field(None, gt=0)
    #: the dev metric that selects the best checkpoint ("auto": the data set's
    #: headline metric), and whether higher is better
    select_metric: str = "auto"
    select_mode: Literal["max", "min"] = "max"
    #: log the running training loss every N optimizer steps
    log_every: int = Field(10, gt=0)
    #: per-parameter-group learning rates: group name -> lr (null: none)
    group_learning_rates: dict[str, float] = Field(default_factory=dict)

    @field_validator("group_learning_rates", mode="before")
    @classmethod
    def _no_groups(cls, v: Any) -> Any:
        return {} if v is None else v

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _yaml_no(cls, v: Any) -> Any:
        # YAML reads an unquoted `no` (`train.mixed_precision=no`) as false
        return "no" if v is False else v

    @model_validator(mode="after")
    def _stopping_needs_evaluations(self):
        if self.eval_every == "end" and self.early_stopping_patience is not None:
            raise ValueError("train.early_stopping_patience counts dev evaluations during training: it needs "
                             "train.eval_every: epoch or a number of steps, not end")
        return self


class TrackingConfig(_Strict):
    #: tracker plugins to notify ("mlflow"); empty: none
    trackers: list[str] = Field(default_factory=lambda: ["mlflow"])
    experiment: str = "relforge"
    tracking_uri: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    #: log the selected model as an MLflow model (pyfunc flavor, ``runs:/<id>/model``) that
    #: ``mlflow models serve`` can serve; its weights are hard links to the run's model in a local store on
    #: the same file system, copies elsewhere (false: none)
    log_model: bool = True


class DecisionSettings(_Strict):
    """How a ranking becomes a set of relations (see relforge.engine.decision)."""

    mode: Literal["argmax", "threshold"] = "argmax"
    threshold: float = Field(0.5, gt=0, le=1)
    fallback_top1: bool = True
    #: threshold mode: after training, choose the threshold that maximises the
    #: selection metric on dev (with the selected model) and decide test with it
    tune_on_dev: bool = False
    #: the threshold chosen on dev (written by the pipeline into the saved
    #: model's configuration; when set, it replaces ``threshold`` in decisions)
    dev_threshold: float | None = Field(None, gt=0, le=1)

    @model_validator(mode="after")
    def _tuning_needs_threshold(self):
        if self.tune_on_dev and self.mode != "threshold":
            raise ValueError("decision.tune_on_dev tunes a threshold: it needs decision.mode: threshold")
        return self


def folder_name(value: str | None, what: str = "name") -> str | None:
    """``value`` if it is a plain folder name (it becomes one under the
    output folder), else a ValueError: no separators, no ``..``."""
    if value is None:
        return value
    if not value.strip() or "/" in value or "\\" in value or value in (".", "..") or value.startswith("~"):
        raise ValueError(f"{what} {value!r} must be a plain folder name (no '/', '\\', '..'): it names a folder "
                         f"inside the output folder")
    return value


class RunConfig(_Strict):
    method: str | None = None
    name: str | None = None
    seed: int = 42
    output_dir: str = "runs"
    data: DataConfig = Field(default_factory=DataConfig)
    model: ComponentRef | None = None
    template: ComponentRef | None = None
    decoder: ComponentRef | None = None
    loss: ComponentRef | None = None
    retriever: ComponentRef | None = None
    pretraining: list[ComponentRef] = Field(default_factory=list)
    train: TrainConfig = Field(default_factory=TrainConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    decision: DecisionSettings = Field(default_factory=DecisionSettings)
    #: free-form method-specific options that are not components
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("template", "decoder", "loss", "retriever", mode="before")
    @classmethod
    def _component_refs(cls, v: Any) -> Any:
        return _coerce_ref(v)

    @field_validator("name")
    @classmethod
    def _name_stays_inside(cls, v: str | None) -> str | None:
        return folder_name(v, "name")

    @field_validator("model", mode="before")
    @classmethod
    def _model_ref(cls, v: Any) -> Any:
        if isinstance(v, Mapping):
            for key, message in _LEGACY_MODEL_KEYS.items():
                if key in v:
                    raise ValueError(message)
        return _coerce_ref(v)

    @field_validator("pretraining", mode="before")
    @classmethod
    def _stage_refs(cls, v: Any) -> Any:
        return [_coerce_ref(x) for x in v] if isinstance(v, list) else v


_COMPONENT_PATHS = tuple(COMPONENT_SECTIONS)


def _normalize_refs(layer: DictConfig) -> DictConfig:
    """Expand the shorthand ``loss: name`` to ``loss: {name: name}`` (also in
    the ``pretraining`` list) so that layers merge key by key."""
    layer = layer.copy()
    for path in _COMPONENT_PATHS:
        value = OmegaConf.select(layer, path)
        if isinstance(value, str):
            OmegaConf.update(layer, path, {"name": value}, merge=False)
    stages = layer.get("pretraining")
    if isinstance(stages, ListConfig):
        layer.pretraining = [{"name": x} if isinstance(x, str) else x for x in stages]
    return layer


def _drop_replaced_components(merged: DictConfig, layer: DictConfig) -> None:
    """A layer that picks another component for a section replaces that
    section whole: the old component's settings would not fit the new one."""
    for path in _COMPONENT_PATHS:
        old = OmegaConf.select(merged, f"{path}.name")
        new = OmegaConf.select(layer, f"{path}.name")
        if old is not None and new is not None and old != new:
            OmegaConf.update(merged, path, {}, merge=False)


@dataclass
class ResolvedConfig:
    """A validated run configuration.

    ``data``: the resolved configuration as plain dict (what is saved with a
    run); ``run``: the validated :class:`RunConfig`; ``components``: key path
    -> (full component name, validated settings) for every selected component.
    """

    data: dict[str, Any]
    run: RunConfig
    components: dict[str, tuple[str, BaseModel]]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.data, sort_keys=False, allow_unicode=True)

    def settings(self, path: str) -> BaseModel:
        return self.components[path][1]

    def component_name(self, path: str) -> str:
        return self.components[path][0]

    @property
    def model_settings(self) -> ModelSettings | None:
        """The model's validated settings (None when no model is configured)."""
        entry = self.components.get("model")
        return entry[1] if entry else None  # type: ignore[return-value]


def _load_yaml(path: Path) -> DictConfig:
    if not path.exists():
        raise ConfigError(f"configuration file not found: {path}")
    try:
        cfg = OmegaConf.load(path)
    except (OmegaConfBaseException, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if isinstance(cfg, ListConfig):
        raise ConfigError(f"{path}: the top level must be a mapping, not a list")
    return cfg


def parse_overrides(overrides: Sequence[str]) -> list[tuple[str, Any]]:
    """``key.path=value`` -> ``(key.path, value)``, the value read by
    ``OmegaConf.from_dotlist`` (YAML: ``3`` is an int, ``1e-3`` a float,
    ``[1,2]`` a list, ``{a: 1}`` a mapping; ``${...}`` interpolations are kept
    as written)."""
    parsed = []
    for o in overrides:
        key, sep, raw = o.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"overrides must look like key.path=value; got {o!r}")
        parsed.append((key, _dotlist_value(raw)))
    return parsed


def _dotlist_value(raw: str) -> Any:
    if "${" in raw:
        return raw
    try:  # one fixed key: the key path's own syntax (list indices, odd names) is checked above, not here
        return OmegaConf.to_container(OmegaConf.from_dotlist([f"value={raw}"]), resolve=False)["value"]
    except (OmegaConfBaseException, ValueError, yaml.YAMLError):
        return raw


def settings_from_pairs(pairs: Sequence[str], *, option: str = "--set") -> dict[str, Any]:
    """``["files.ood=ood.jsonl", "na_pairs=true"]`` -> a nested mapping
    (``{"files": {"ood": "ood.jsonl"}, "na_pairs": True}``), values read as
    :func:`parse_overrides` reads them; a malformed pair is a
    :class:`ConfigError` naming ``option``."""
    out = OmegaConf.create({})
    for key, value in parse_overrides_for(pairs, option):
        OmegaConf.update(out, key, value, merge=True, force_add=True)
    return OmegaConf.to_container(out, resolve=False)  # type: ignore[return-value]


def parse_overrides_for(pairs: Sequence[str], option: str) -> list[tuple[str, Any]]:
    try:
        return parse_overrides(pairs)
    except ConfigError as exc:
        raise ConfigError(f"{option}: {exc}".replace("overrides must", "each value must")) from None


def load_config(files: Iterable[str | Path] = (), overrides: Sequence[str] = (), *,
                registry=None, base: Mapping[str, Any] | None = None) -> ResolvedConfig:
    """Merge method defaults, ``base``, ``files`` and ``overrides``; resolve; validate."""
    from relforge.registry import RegistryError, get_registry

    registry = registry or get_registry()
    layers: list[DictConfig] = [OmegaConf.create(dict(base or {}))]
    layers += [_load_yaml(Path(f)) for f in files]
    pairs = parse_overrides(overrides)
    method_name = next((v for k, v in reversed(pairs) if k == "method"), None)
    if method_name is None:
        for layer in reversed(layers):
            if layer.get("method") is not None:
                method_name = layer.get("method")
                break
    if method_name is not None:
        try:
            method = registry.method(str(method_name))
        except RegistryError as exc:
            raise ConfigError(f"method: {exc}") from None
        layers.insert(0, OmegaConf.create(method.defaults))
    merged = OmegaConf.create({})
    for layer in layers:
        layer = _normalize_refs(layer)
        _drop_replaced_components(merged, layer)
        try:
            merged = OmegaConf.merge(merged, layer)
        except (OmegaConfBaseException, TypeError, ValueError) as exc:
            raise ConfigError(f"could not merge configuration: {exc}") from None
    for key, value in pairs:
        if key in _COMPONENT_PATHS or key.endswith(".name") and key[:-5] in _COMPONENT_PATHS:
            section = key.removesuffix(".name")
            new_name = value.get("name") if isinstance(value, Mapping) else value
            if OmegaConf.select(merged, f"{section}.name") not in (None, new_name):
                OmegaConf.update(merged, section, {}, merge=False, force_add=True)
            if key == section and isinstance(value, str):
                key, value = f"{section}.name", value
        try:
            OmegaConf.update(merged, key, value, merge=True, force_add=True)
        except (OmegaConfBaseException, TypeError, ValueError, IndexError) as exc:
            raise ConfigError(f"override {key}={value!r}: {exc}") from None
    try:
        data = OmegaConf.to_container(merged, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None)
        raise ConfigError(f"{key or 'configuration'}: {exc.msg if hasattr(exc, 'msg') else exc}") from None
    return validate_config(data, registry=registry)


def validate_config(data: Mapping[str, Any], *, registry=None, check: bool = True) -> ResolvedConfig:
    """Validate merged configuration data: the run schema, every selected
    component's settings, and (``check``) that the components can work
    together (:func:`relforge.compat.check_compatibility`)."""
    from relforge.registry import RegistryError, get_registry

    registry = registry or get_registry()
    try:
        run = RunConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(format_validation_error(exc, model=RunConfig))) \
            from None
    components: dict[str, tuple[str, BaseModel]] = {}
    problems: list[str] = []
    refs: list[tuple[str, ComponentKind, ComponentRef]] = []
    for path, kind in COMPONENT_SECTIONS.items():
        obj: Any = run
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if obj is not None:
            refs.append((path, kind, obj))
    for section, kind in LIST_SECTIONS.items():
        for i, ref in enumerate(getattr(run, section)):
            refs.append((f"{section}.{i}", kind, ref))
    for path, kind, ref in refs:
        try:
            info = registry.get(kind, ref.name)
        except RegistryError as exc:
            problems.append(f"{path}.name: {exc}")
            continue
        try:
            settings = info.settings_model.model_validate(ref.settings)
        except ValidationError as exc:
            problems += format_validation_error(exc, prefix=path, component=info.full_name,
                                                model=info.settings_model)
            continue
        components[path] = (info.full_name, settings)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    if check:
        from relforge.compat import check_compatibility

        problems = check_compatibility(components, registry, run)
        if problems:
            raise ConfigError("incompatible components:\n  " + "\n  ".join(problems))
    return ResolvedConfig(data=_with_canonical_names(dict(data), components), run=run, components=components)


def migrate_legacy_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A configuration saved before models were registered components
    (``model.architecture`` and ``model.options``), in today's form: what
    lets older saved model folders load."""
    data = dict(config)
    model = data.get("model")
    if not isinstance(model, Mapping) or not ({"architecture", "options", "tokenizer"} & set(model)):
        return data
    model = dict(model)
    arch = model.pop("architecture", "seq2seq")
    options = dict(model.pop("options", None) or {})
    model.pop("tokenizer", None)
    if data.get("method") == "etrag":
        model.update({"name": "etrag.rag", **options})
    elif arch == "encoder":
        model.update({"name": "relforge.marker_classifier",
                      **({"dropout": options["dropout"]} if "dropout" in options else {})})
    else:
        model["name"] = "relforge.seq2seq"
    data["model"] = model
    return data


def _with_canonical_names(data: dict[str, Any], components: Mapping[str, tuple[str, BaseModel]]) -> dict[str, Any]:
    """The resolved config with every component's full name and all of its
    settings (defaults included), so the saved config reproduces the run."""
    out = _deep_copy(data)
    for path, (full, settings) in components.items():
        parts = path.split(".")
        parent = out
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent[p]
        last = int(parts[-1]) if isinstance(parent, list) else parts[-1]
        parent[last] = {"name": full, **settings.model_dump(mode="json")}
    return out


def _deep_copy(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _deep_copy(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_deep_copy(v) for v in x]
    return x


SECRET_MARKERS = ("api_key", "apikey", "secret", "password", "token", "authorization")
#: keys that name where a secret is kept (an environment variable), not the secret: saved as written
SECRET_REFERENCES = ("_env", "_var", "_file", "_path")
#: query parameters of a URL that carry credentials
_URL_SECRET_PARAMS = ("key", "api_key", "apikey", "token", "access_token", "secret", "password", "sig",
                      "signature", "auth")


def redact_url(text: str) -> str:
    """``scheme://user:pass@host/...?key=...`` with the user information and
    credential-like query values replaced by ``***``; other text unchanged."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    if "://" not in text:
        return text
    try:
        parts = urlsplit(text)
    except ValueError:
        return text
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in _URL_SECRET_PARAMS for k, _ in pairs):
            query = urlencode([(k, "***" if k.lower() in _URL_SECRET_PARAMS else v) for k, v in pairs])
    if (netloc, query) == (parts.netloc, parts.query):
        return text
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact(x: Any, _key: str = "") -> Any:
    """A copy with the values of secret-looking keys replaced by '***', and
    credentials inside URL values (``https://user:key@host``, ``?api_key=``)
    masked. ``max_*_tokens``-style keys are numbers, not secrets, and are
    kept; so are keys that only name where a secret lives (``api_key_env``)."""
    if isinstance(x, Mapping):
        return {k: redact(v, str(k)) for k, v in x.items()}
    if isinstance(x, list):
        return [redact(v, _key) for v in x]
    lowered = _key.lower()
    if isinstance(x, str) and x:
        if any(m in lowered for m in SECRET_MARKERS) and not lowered.endswith(SECRET_REFERENCES):
            return "***"
        return redact_url(x)
    return x


#: top-level keys that say where and how a run is recorded, not what it computes
NOT_IDENTITY = ("tracking", "name", "output_dir")


def identity_config(data: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a configuration that decides a run's result."""
    return {k: v for k, v in data.items() if k not in NOT_IDENTITY}


def config_hash(data: Mapping[str, Any]) -> str:
    """A stable hash of a resolved configuration (tracking and names left out,
    so that where a run is logged does not change which run it is)."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(identity_config(data), sort_keys=True, default=str).encode()).hexdigest()[:16]


def identity_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """``key: old -> new`` for every setting that differs between two
    configurations' identities (flattened key paths)."""
    a, b = flatten(identity_config(old)), flatten(identity_config(new))
    return [f"{k}: {a.get(k, '(unset)')!r} -> {b.get(k, '(unset)')!r}" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k)]


def flatten(x: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists are indexed (``a.0``)."""
    out: dict[str, Any] = {}
    for k, v in x.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key))
        elif isinstance(v, list) and v and any(isinstance(i, (Mapping, list)) for i in v):
            out.update(flatten({str(i): item for i, item in enumerate(v)}, key))
        else:
            out[key] = v
    return out
