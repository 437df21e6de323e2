"""Every reader is registered through the hook, documented in the data README, and resolvable by name."""
from __future__ import annotations

from pathlib import Path

import relforge.data
from relforge.components import Dataset
from relforge.data.readers import READERS
from relforge.registry import Registry

README = Path(relforge.data.__file__).with_name("README.md").read_text()


def test_every_reader_is_registered_and_documented():
    reg = Registry().load(entry_points=False)
    assert not reg.errors, reg.errors
    registered = {c.name for c in reg.components("dataset") if c.plugin == "relforge"}
    assert {r.name for r in READERS} <= registered
    for reader in READERS:
        assert issubclass(reader, Dataset) and reader.__doc__
        assert f"`{reader.name}`" in README.split("## Data directory")[0], reader.name  # in the table
        assert reader.metric in ("micro_f1", "semeval", "multilabel", "episode_accuracy")
        ds = reg.create("dataset", reader.name, {})
        assert isinstance(ds, reader) and ds.splits()


def test_unknown_setting_is_an_error_naming_the_key():
    import pytest

    from relforge.config import ConfigError

    reg = Registry().load(entry_points=False)
    with pytest.raises(ConfigError, match="na_pair.*unknown key"):
        reg.create("dataset", "nyt", {"na_pair": True})
