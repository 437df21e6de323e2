import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The public data sets, or a skip when they are not present."""
    d = Path(os.environ.get("RELFORGE_DATA_DIR", REPO.parent / "shared" / "data"))
    if not d.is_dir():
        pytest.skip(f"shared data directory not found at {d} (set RELFORGE_DATA_DIR)")
    return d
