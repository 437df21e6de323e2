"""Settings validation with messages that name the key path and the component.

A leaf module (it imports nothing of RelForge), so that the registry, the
configuration layer and the data layer can all use it without import circles.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError


class ConfigError(ValueError):
    """A configuration problem; the message names the key path(s)."""


def _fields_at(model: type[BaseModel] | None, loc: tuple) -> list[str]:
    """The field names of the (nested) pydantic model that holds ``loc``'s
    last key, following annotations; [] when it cannot be told."""
    import typing

    current: Any = model
    for part in loc[:-1]:
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return []
        ann = current.model_fields[part].annotation
        options = [a for a in typing.get_args(ann) or (ann,) if isinstance(a, type) and issubclass(a, BaseModel)]
        current = options[0] if options else None
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def format_validation_error(exc: ValidationError, *, prefix: str = "", component: str | None = None,
                            model: type[BaseModel] | None = None) -> list[str]:
    """One line per error: the key path, what is wrong, what was given, the
    component; for an unknown key, the closest allowed one (``did you mean``)."""
    import difflib

    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        path = ".".join(p for p in (prefix, loc) if p)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
            close = difflib.get_close_matches(str(err["loc"][-1]), _fields_at(model, err["loc"]), n=1, cutoff=0.6)
            if close:
                msg += f"; did you mean {close[0]!r}?"
        where = f" (component {component})" if component else ""
        got = ""
        if "input" in err and err["type"] != "extra_forbidden" and not isinstance(err["input"], (dict, list)):
            got = f"; got {err['input']!r}"
        lines.append(f"{path or '<root>'}: {msg}{got}{where}")
    return lines


def validate_settings(model: type[BaseModel], data: Mapping[str, Any], *, path: str, component: str) -> BaseModel:
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(
            format_validation_error(exc, prefix=path, component=component, model=model))) from None


class UserFacingError(Exception):
    """Base for errors whose message is all a user needs (what is wrong,
    where, and the way out): the CLI prints it as one line with exit code 2
    (``--debug`` shows the traceback). Plugins subclass it for their own
    (TKRE's ``LLMError``: an endpoint that does not answer)."""


class InputError(UserFacingError, ValueError):
    """Bad input that is neither configuration nor data: a damaged or
    foreign file or folder given to a command (the message names it and the
    way out)."""
