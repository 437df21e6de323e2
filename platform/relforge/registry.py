"""The plugin registry: loads plugins, collects their components, resolves names.

Plugins come from two places: the core's own built-in plugin modules
(:data:`BUILTIN_PLUGINS`) and the ``relforge`` entry-point group, which is
how the bundled method plugins and any third-party plugin are found. A plugin
that fails to import, implements an unknown hook, has a hook with a wrong
signature, or registers an invalid component is recorded in
:attr:`Registry.errors` with its name and the reason; the other plugins still
load.
"""
from __future__ import annotations

import difflib
import importlib
import importlib.metadata as md
import inspect
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy
from pydantic import BaseModel

from relforge import hookspecs
from relforge.components import KINDS, ComponentKind, Method, ModelSettings

#: plugin name -> module, for the core's own plugins (its built-in components
#: and its built-in tracker); loaded before any entry point
BUILTIN_PLUGINS: dict[str, str] = {"relforge": "relforge.builtin", "mlflow": "relforge.tracking.mlflow_tracker"}

ENTRY_POINT_GROUP = "relforge"


class RegistryError(Exception):
    """A name could not be resolved, or a registration was refused."""


@dataclass
class PluginInfo:
    name: str
    version: str | None
    source: str  # "builtin", "entry point <dist>", "in-process"
    module: str | None
    error: str | None = None
    components: dict[ComponentKind, list[str]] = field(default_factory=dict)
    hooks: list[str] = field(default_factory=list)


@dataclass
class ComponentInfo:
    kind: ComponentKind
    plugin: str
    name: str
    factory: Any  # the component class, or the Method
    aliases: tuple[str, ...] = ()
    description: str = ""

    @property
    def full_name(self) -> str:
        return f"{self.plugin}.{self.name}"

    @property
    def settings_model(self) -> type[BaseModel] | None:
        return getattr(self.factory, "Settings", None) if self.kind is not ComponentKind.METHOD else None


@dataclass
class PluginLoadError:
    plugin: str
    reason: str

    def __str__(self) -> str:
        return f"plugin {self.plugin!r}: {self.reason}"


class Registry:
    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.errors: list[PluginLoadError] = []
        self._components: dict[ComponentKind, dict[str, ComponentInfo]] = {k: {} for k in ComponentKind}
        # global names (aliases and method names) -> full name
        self._global_names: dict[ComponentKind, dict[str, ComponentInfo]] = {k: {} for k in ComponentKind}

    @property
    def hook(self):
        return self.pm.hook

    # ---- loading -----------------------------------------------------------

    def load(self, *, builtins: bool = True, entry_points: bool = True) -> Registry:
        if builtins:
            for name, modname in BUILTIN_PLUGINS.items():
                self._load_module(name, modname, source="builtin", version=_core_version())
        if entry_points:
            self._load_entry_points()
        return self

    def _load_entry_points(self) -> None:
        seen: dict[str, str] = {}
        for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else "?"
            if ep.name in seen and seen[ep.name] != dist_name:
                self._fail(ep.name, f"entry point name claimed by two distributions: "
                                    f"{seen[ep.name]!r} and {dist_name!r}; the second was not loaded")
                continue
            if ep.name in self.plugins:
                continue
            seen[ep.name] = dist_name
            try:
                obj = ep.load()
            except Exception as exc:  # noqa: BLE001 - any import failure is reported, not raised
                self._fail(ep.name, f"failed to import {ep.value!r}: {_short_exc(exc)}",
                           source=f"entry point {dist_name}", module=ep.value,
                           version=dist.version if dist is not None else None)
                continue
            version = getattr(obj, "__version__", None) or (dist.version if dist is not None else None)
            self.add_plugin(obj, ep.name, source=f"entry point {dist_name}", version=version)

    def _load_module(self, name: str, modname: str, *, source: str, version: str | None) -> None:
        try:
            module = importlib.import_module(modname)
        except Exception as exc:  # noqa: BLE001
            self._fail(name, f"failed to import {modname!r}: {_short_exc(exc)}", source=source, module=modname)
            return
        self.add_plugin(module, name, source=source, version=version)

    def add_plugin(self, plugin: ModuleType | object, name: str, *, source: str = "in-process",
                   version: str | None = None) -> bool:
        """Register one plugin object (a module or an instance with hook
        implementations) and collect its components. Returns False, and records
        the error, when the plugin is refused."""
        modname = getattr(plugin, "__name__", type(plugin).__name__)
        if version is None:
            version = getattr(plugin, "__version__", None)
        if name in self.plugins:
            self._fail(name, f"a plugin named {name!r} is already loaded "
                             f"(from {self.plugins[name].module}); {modname} was not loaded")
            return False
        unknown = self._unknown_hooks(plugin)
        if unknown:
            self._fail(name, "implements hooks that do not exist: " + ", ".join(unknown)
                       + f" (known hooks: {', '.join(sorted(_spec_names()))})",
                       source=source, module=modname, version=version)
            return False
        try:
            self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            self._fail(name, f"invalid hook implementation: {exc}", source=source, module=modname, version=version)
            return False
        except ValueError as exc:
            self._fail(name, str(exc), source=source, module=modname, version=version)
            return False
        info = PluginInfo(name=name, version=version, source=source, module=modname,
                          hooks=sorted(h.name for h in self.pm.get_hookcallers(plugin) or []))
        self.plugins[name] = info
        self._collect(name, plugin)
        return True

    def _unknown_hooks(self, plugin: object) -> list[str]:
        known = _spec_names()
        unknown = []
        for attr in dir(plugin):
            try:
                value = getattr(plugin, attr)
            except Exception:  # noqa: BLE001
                continue
            if callable(value) and hasattr(value, f"{hookspecs.PROJECT_NAME}_impl") and attr not in known:
                unknown.append(attr)
        return unknown

    def _collect(self, plugin_name: str, plugin: object) -> None:
        for spec in KINDS:
            kind, hook_name = spec.kind, spec.hook
            impl = getattr(plugin, hook_name, None)
            if impl is None or not hasattr(impl, f"{hookspecs.PROJECT_NAME}_impl"):
                continue
            register = self._make_register(kind, plugin_name)
            try:
                impl(register=register)
            except Exception as exc:  # noqa: BLE001
                self._fail(plugin_name, f"{hook_name} raised {_short_exc(exc)}")

    def _make_register(self, kind: ComponentKind, plugin_name: str):
        def register(component: Any, *, name: str | None = None, aliases: Iterable[str] = (),
                     description: str | None = None) -> None:
            try:
                self._register(kind, plugin_name, component, name=name, aliases=tuple(aliases),
                               description=description)
            except RegistryError as exc:
                self._fail(plugin_name, str(exc))
        register.__doc__ = f"Register a {kind.value} of plugin {plugin_name!r}."
        return register

    def _register(self, kind: ComponentKind, plugin: str, component: Any, *, name: str | None,
                  aliases: tuple[str, ...], description: str | None) -> ComponentInfo:
        base = kind.spec.base
        if kind is ComponentKind.METHOD:
            if not isinstance(component, Method):
                raise RegistryError(f"register_methods got {component!r}; expected a relforge.components.Method")
            name = name or component.name
            description = description or component.description
        else:
            if not (inspect.isclass(component) and issubclass(component, base)):
                raise RegistryError(f"{kind.hook} got {component!r}; expected a subclass of "
                                    f"{base.__module__}.{base.__qualname__}")
            settings = getattr(component, "Settings", None)
            if not (inspect.isclass(settings) and issubclass(settings, BaseModel)):
                raise RegistryError(f"{kind.value} {component.__qualname__}: its Settings attribute must be "
                                    f"a pydantic BaseModel subclass, got {settings!r}")
            if kind is ComponentKind.MODEL and not issubclass(settings, ModelSettings):
                raise RegistryError(f"model {component.__qualname__}: its Settings must derive from "
                                    f"relforge.components.ModelSettings (backbone, lengths, frozen embeddings)")
            name = name or getattr(component, "name", None)
            if not name:
                raise RegistryError(f"{kind.value} {component.__qualname__} has no name; set the class "
                                    f"attribute `name` or pass register(..., name=...)")
            description = description or plain_text(" ".join((inspect.getdoc(component) or "").split("\n\n")[0]
                                                             .split()))
        if "." in name:
            raise RegistryError(f"{kind.value} name {name!r} must not contain '.'; the registry adds "
                                f"the plugin prefix itself")
        full = f"{plugin}.{name}"
        table = self._components[kind]
        if full in table:
            raise RegistryError(f"duplicate {kind.value} {full!r}: plugin {plugin!r} registered it twice")
        info = ComponentInfo(kind=kind, plugin=plugin, name=name, factory=component, aliases=aliases,
                             description=description or "")
        global_names = list(aliases) + ([name] if kind is ComponentKind.METHOD else [])
        for g in global_names:
            other = self._global_names[kind].get(g)
            if other is not None:
                raise RegistryError(f"duplicate {kind.value} name {g!r}: plugin {plugin!r} tried to "
                                    f"register it, but plugin {other.plugin!r} already did "
                                    f"({other.full_name}); {full} was not registered")
        table[full] = info
        for g in global_names:
            self._global_names[kind][g] = info
        self.plugins[plugin].components.setdefault(kind, []).append(name)
        return info

    def _fail(self, plugin: str, reason: str, *, source: str | None = None, module: str | None = None,
              version: str | None = None) -> None:
        self.errors.append(PluginLoadError(plugin, reason))
        if plugin not in self.plugins and source is not None:
            self.plugins[plugin] = PluginInfo(name=plugin, version=version, source=source, module=module,
                                              error=reason)
        elif plugin in self.plugins and self.plugins[plugin].error is None:
            self.plugins[plugin].error = reason

    # ---- lookup ----------------------------------------------------------

    def components(self, kind: ComponentKind | str) -> list[ComponentInfo]:
        kind = ComponentKind(kind)
        return sorted(self._components[kind].values(), key=lambda c: c.full_name)

    def get(self, kind: ComponentKind | str, name: str) -> ComponentInfo:
        """Resolve a full name (``plugin.component``), a global alias or method
        name, or a short name that only one plugin uses."""
        kind = ComponentKind(kind)
        table = self._components[kind]
        if name in table:
            return table[name]
        if name in self._global_names[kind]:
            return self._global_names[kind][name]
        matches = [c for c in table.values() if c.name == name]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise RegistryError(f"{kind.value} name {name!r} is ambiguous: "
                                f"{', '.join(sorted(m.full_name for m in matches))}; use the full name")
        known = sorted(set(table) | set(self._global_names[kind]) | {c.name for c in table.values()})
        hint = difflib.get_close_matches(name, known, n=3)
        msg = f"unknown {kind.value} {name!r}"
        if hint:
            msg += f"; did you mean {', '.join(repr(h) for h in hint)}?"
        msg += f" Available: {', '.join(sorted(table)) or '(none)'}"
        failed = [e.plugin for e in self.errors]
        if failed:
            msg += f". Plugins that failed to load: {', '.join(sorted(set(failed)))} (see `relforge plugins`)"
        raise RegistryError(msg)

    def short_name(self, info: ComponentInfo) -> str:
        """The shortest name that resolves to ``info``."""
        try:
            if self.get(info.kind, info.name) is info:
                return info.name
        except RegistryError:
            pass
        return info.full_name

    def create(self, kind: ComponentKind | str, name: str, settings: Mapping[str, Any] | BaseModel | None = None,
               **kwargs: Any) -> Any:
        """Build a component from its name and settings (validated here)."""
        info = self.get(kind, name)
        if info.kind is ComponentKind.METHOD:
            raise RegistryError("methods are configurations, not components; use config.load_config")
        model = info.settings_model
        if not isinstance(settings, BaseModel):
            from relforge.validation import validate_settings

            settings = validate_settings(model, dict(settings or {}), path=kind if isinstance(kind, str) else
                                         ComponentKind(kind).value, component=info.full_name)
        return info.factory(settings, **kwargs)

    def method(self, name: str) -> Method:
        return self.get(ComponentKind.METHOD, name).factory

    def as_dict(self) -> dict[str, Any]:
        """A machine-readable description (``relforge plugins --json``)."""
        out: dict[str, Any] = {"plugins": [], "errors": [str(e) for e in self.errors]}
        for p in sorted(self.plugins.values(), key=lambda p: (p.source != "builtin", p.name)):
            comps = {}
            for kind in ComponentKind:
                infos = [c for c in self.components(kind) if c.plugin == p.name]
                if infos:
                    comps[kind.plural] = [
                        {"name": c.full_name, "short": self.short_name(c), "aliases": list(c.aliases),
                         "description": c.description, **_abilities(c.factory)} for c in infos]
            out["plugins"].append({"name": p.name, "version": p.version, "source": p.source,
                                   "module": p.module, "error": p.error, "hooks": p.hooks, "components": comps})
        return out


def plain_text(text: str) -> str:
    """A docstring line without reStructuredText markup: ``x`` -> x,
    :class:`~a.B` -> B, :mod:`a.b` -> a.b, **x** -> x."""
    import re

    text = re.sub(r":[a-z]+:`(~?)([^`]+)`", lambda m: m.group(2).split(".")[-1] if m.group(1) else m.group(2), text)
    text = re.sub(r"``([^`]+)``", r"\1", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"\1", text)


def _abilities(factory: Any) -> dict[str, Any]:
    """What a component class provides and requires (ability names), and for
    models the sections they use; empty for methods."""
    from relforge.components import Component, REModel

    if not (isinstance(factory, type) and issubclass(factory, Component)):
        return {}
    out: dict[str, Any] = {"provides": sorted(a.name for a in factory.provides),
                           "requires": {sec: sorted(a.name for a in abl) for sec, abl in factory.requires.items()}}
    if issubclass(factory, REModel):
        out["uses"] = sorted(factory.uses)
        out["needs"] = sorted(factory.needs)
    return out


def _spec_names() -> set[str]:
    return {n for n, v in vars(hookspecs).items() if hasattr(v, f"{hookspecs.PROJECT_NAME}_spec")}


def _short_exc(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" (at {tb[-1].filename}:{tb[-1].lineno})" if tb else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _core_version() -> str | None:
    from relforge import __version__

    return __version__


_REGISTRY: Registry | None = None


def get_registry(*, reload: bool = False) -> Registry:
    """The process-wide registry, loaded on first use."""
    global _REGISTRY
    if _REGISTRY is None or reload:
        _REGISTRY = Registry().load()
    return _REGISTRY
