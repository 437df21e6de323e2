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


def format_validation_error(exc: ValidationError, *, prefix: str = "", component: str | None = None) -> list[str]:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        path = ".".join(p for p in (prefix, loc) if p)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
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
            format_validation_error(exc, prefix=path, component=component))) from None


class UserFacingError(Exception):
    """Base for errors whose message is all a user needs (what is wrong,
    where, and the way out): the CLI prints it as one line with exit code 2
    (``--debug`` shows the traceback). Plugins subclass it for their own
    (TKRE's ``LLMError``: an endpoint that does not answer)."""


class InputError(UserFacingError, ValueError):
    """Bad input that is neither configuration nor data: a damaged or
    foreign file or folder given to a command (the message names it and the
    way out)."""
