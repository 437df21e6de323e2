"""Every shipped suite expands into valid cell configurations."""
from __future__ import annotations

from pathlib import Path

import pytest

from relforge.bench.suite import expand, read_suite

SUITES = sorted((Path(__file__).resolve().parents[2] / "benchmarks" / "suites").glob("*.yaml"))


def test_the_required_suites_are_shipped():
    names = {p.stem for p in SUITES}
    assert {"quickstart", "cpu-reference"} <= names
    assert any(n.startswith("paper-") for n in names)


@pytest.mark.parametrize("path", SUITES, ids=[p.stem for p in SUITES])
def test_suite_cells_are_valid(path):
    spec = read_suite(path)
    assert spec.name == path.stem
    cells = expand(spec)
    assert cells, f"{path.name} has no cells"
    bad = {c.cell_id: c.error for c in cells if c.error}
    assert not bad, bad
    assert len({c.config_hash for c in cells}) == len(cells), "two cells with the same configuration"
