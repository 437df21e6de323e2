"""The registry: loading, naming, duplicates and failure modes."""
from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import pytest

from relforge import hookimpl
from relforge.components import ComponentKind, Loss, Method, Settings
from relforge.registry import Registry, RegistryError

from tests.core.plugins_for_tests import ScaledMSE, ToyPlugin


def fresh(*plugins: tuple[object, str], builtins=False, entry_points=False) -> Registry:
    reg = Registry().load(builtins=builtins, entry_points=entry_points)
    for obj, name in plugins:
        reg.add_plugin(obj, name)
    return reg


def test_bundled_plugins_load_through_entry_points():
    reg = Registry().load()
    assert not reg.errors, reg.errors
    for name in ("cptuning", "etrag", "tkre"):
        info = reg.plugins[name]
        assert info.source == "entry point relforge"
        assert info.module == f"relforge_{name}"
        assert info.version == "0.1.0"
    assert reg.plugins["relforge"].source == "builtin"


def test_in_process_plugin_is_listed_and_resolvable():
    reg = fresh((ToyPlugin(), "toy"))
    listed = reg.as_dict()["plugins"]
    toy = next(p for p in listed if p["name"] == "toy")
    assert set(toy["components"]) == {k.plural for k in ComponentKind}
    assert reg.get("loss", "toy.scaled_mse").factory is ScaledMSE
    assert reg.get("loss", "scaled_mse").factory is ScaledMSE  # unambiguous short name
    assert reg.get("loss", "mse").factory is ScaledMSE  # alias
    loss = reg.create("loss", "mse", {"scale": 3.0})
    assert loss.settings.scale == 3.0


def test_unknown_name_suggests_close_matches():
    reg = fresh((ToyPlugin(), "toy"))
    with pytest.raises(RegistryError, match=r"unknown loss 'scaled_mes'; did you mean .*scaled_mse"):
        reg.get("loss", "scaled_mes")


def test_create_validates_settings_with_key_path_and_component():
    reg = fresh((ToyPlugin(), "toy"))
    with pytest.raises(ValueError, match=r"loss\.scale: .*greater than 0.*component toy\.scaled_mse"):
        reg.create("loss", "mse", {"scale": -1})
    with pytest.raises(ValueError, match=r"loss\.scael: unknown key; did you mean .scale.\? \(component toy\.scaled_mse\)"):
        reg.create("loss", "mse", {"scael": 1})


class OtherLossPlugin:
    class MSE(Loss):
        name = "scaled_mse"

    @hookimpl
    def register_losses(self, register):
        register(self.MSE, aliases=["mse"])


def test_duplicate_alias_is_refused_naming_both_plugins():
    reg = fresh((ToyPlugin(), "toy"), (OtherLossPlugin(), "other"))
    msgs = [str(e) for e in reg.errors]
    assert any("'mse'" in m and "'other'" in m and "'toy'" in m for m in msgs), msgs
    assert reg.get("loss", "mse").plugin == "toy"  # the first keeps it
    assert "other.scaled_mse" not in {c.full_name for c in reg.components("loss")}


class SameShortNamePlugin:
    @hookimpl
    def register_losses(self, register):
        register(OtherLossPlugin.MSE)


def test_short_name_used_by_two_plugins_is_ambiguous_and_full_names_work():
    reg = fresh((ToyPlugin(), "toy"), (SameShortNamePlugin(), "other"))
    assert not reg.errors
    with pytest.raises(RegistryError, match=r"ambiguous: other\.scaled_mse, toy\.scaled_mse; use the full name"):
        reg.get("loss", "scaled_mse")
    assert reg.get("loss", "other.scaled_mse").plugin == "other"
    assert reg.short_name(reg.get("loss", "other.scaled_mse")) == "other.scaled_mse"
    assert reg.get("loss", "mse").plugin == "toy"


class DuplicateMethodPlugin:
    @hookimpl
    def register_methods(self, register):
        register(Method(name="toy", defaults={}))


def test_duplicate_method_name_is_refused_naming_both_plugins():
    reg = fresh((ToyPlugin(), "toy"), (DuplicateMethodPlugin(), "copycat"))
    assert any("'toy'" in str(e) and "'copycat'" in str(e) for e in reg.errors), reg.errors
    assert reg.method("toy").defaults  # the toy plugin's method is kept


class TwiceRegistered:
    @hookimpl
    def register_losses(self, register):
        register(ScaledMSE)
        register(ScaledMSE)


def test_component_registered_twice_by_one_plugin():
    reg = fresh((TwiceRegistered(), "twice"))
    assert any("duplicate loss 'twice.scaled_mse'" in str(e) for e in reg.errors)
    assert len(reg.components("loss")) == 1


class UnknownHookPlugin:
    @hookimpl
    def register_lossez(self, register):  # typo'd hook name
        pass


class WrongSignaturePlugin:
    @hookimpl
    def register_losses(self, register, extra):
        pass


class BadComponentsPlugin:
    class NoSettings(Loss):
        name = "nosettings"
        Settings = dict

    @hookimpl
    def register_losses(self, register):
        register(self.NoSettings)
        register(object)

    @hookimpl
    def register_templates(self, register):
        raise RuntimeError("boom")


def test_failing_plugins_are_named_with_reason_and_others_still_load():
    reg = fresh((UnknownHookPlugin(), "typo"), (WrongSignaturePlugin(), "badsig"),
                (BadComponentsPlugin(), "badcomp"), (ToyPlugin(), "toy"))
    by_plugin = {}
    for e in reg.errors:
        by_plugin.setdefault(e.plugin, []).append(e.reason)
    assert "register_lossez" in by_plugin["typo"][0] and "do not exist" in by_plugin["typo"][0]
    assert "extra" in by_plugin["badsig"][0]
    reasons = " | ".join(by_plugin["badcomp"])
    assert "Settings attribute must be a pydantic BaseModel" in reasons
    assert "expected a subclass of relforge.components.Loss" in reasons
    assert "register_templates raised RuntimeError: boom" in reasons
    assert reg.get("loss", "toy.scaled_mse")  # the good plugin still loads
    assert reg.plugins["toy"].error is None


def _fake_ep(name, value, dist_name="thirdparty", version="9.9"):
    import importlib

    dist = SimpleNamespace(metadata={"Name": dist_name}, version=version)
    return SimpleNamespace(name=name, value=value, dist=dist, group="relforge",
                           load=lambda: importlib.import_module(value))


def test_entry_point_that_fails_to_import(monkeypatch):
    good = types.ModuleType("relforge_test_good_ep")
    good.__version__ = "1.2.3"

    class Stage(ScaledMSE):
        name = "from_ep"
    good.register_losses = hookimpl(lambda register: register(Stage))
    monkeypatch.setitem(sys.modules, "relforge_test_good_ep", good)
    eps = [_fake_ep("broken", "relforge_test_no_such_module"), _fake_ep("good", "relforge_test_good_ep")]
    monkeypatch.setattr("importlib.metadata.entry_points", lambda group: eps if group == "relforge" else [])
    reg = Registry().load(builtins=False)
    assert reg.plugins["broken"].error.startswith("failed to import 'relforge_test_no_such_module': "
                                                  "ModuleNotFoundError")
    assert reg.plugins["broken"].source == "entry point thirdparty"
    assert reg.plugins["good"].version == "1.2.3"
    assert reg.get("loss", "from_ep").plugin == "good"


def test_entry_point_name_claimed_by_two_distributions(monkeypatch):
    mod = types.ModuleType("relforge_test_twin")
    monkeypatch.setitem(sys.modules, "relforge_test_twin", mod)
    eps = [_fake_ep("twin", "relforge_test_twin", "dist-a"), _fake_ep("twin", "relforge_test_twin", "dist-b")]
    monkeypatch.setattr("importlib.metadata.entry_points", lambda group: eps)
    reg = Registry().load(builtins=False)
    assert any("'dist-a'" in str(e) and "'dist-b'" in str(e) for e in reg.errors), reg.errors
    assert "twin" in reg.plugins


def test_component_names_must_not_contain_dots():
    class Dotted(Loss):
        name = "a.b"

    class P:
        @hookimpl
        def register_losses(self, register):
            register(Dotted)

    reg = fresh((P(), "dotted"))
    assert any("must not contain '.'" in str(e) for e in reg.errors)


def test_settings_base_forbids_extra():
    class S(Settings):
        a: int = 1

    with pytest.raises(Exception):
        S(b=2)


def test_descriptions_are_plain_text():
    from relforge.registry import get_registry, plain_text

    assert plain_text("``score`` via :meth:`~a.B.rank_encoded` in :mod:`relforge.retrieval`, **not** x") == \
        "score via rank_encoded in relforge.retrieval, not x"
    from relforge.components import ComponentKind

    for kind in ComponentKind:
        for info in get_registry().components(kind):
            assert "``" not in info.description and ":class:`" not in info.description, info.full_name
