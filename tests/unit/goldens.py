"""Golden files: rendered text compared byte for byte with tests/unit/golden/NAME."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden"


def golden(name: str, text: str) -> None:
    """Compare with tests/unit/golden/NAME byte for byte; PODINFRA_UPDATE_GOLDEN=1 rewrites it instead."""
    path = GOLDEN / name
    if os.environ.get("PODINFRA_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(text.encode())
    assert path.exists(), f"{path} missing: run with PODINFRA_UPDATE_GOLDEN=1 and review it"
    expected = path.read_bytes().decode()
    assert text == expected, "".join(difflib.unified_diff(expected.splitlines(True), text.splitlines(True)))
