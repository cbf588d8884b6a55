"""What ``pyinfra --json`` printed: its one JSON document (``plan``, and after a run ``results``), read
the same way by the demo, the lab tests and the benchmarks.

>>> out = 'Loading...\\n{"plan": [], "results": {"totals": {"success": 2, "error": 0}, "operations": []}}\\n'
>>> totals(out)
{'success': 2, 'error': 0}
"""

from __future__ import annotations

import json
from typing import Any, cast


def document(stdout: str) -> dict[str, Any]:
    """The JSON document in ``pyinfra --json``'s output, after its progress lines. ValueError when there is
    none (pyinfra stopped before it printed one)."""
    start = stdout.find('{"plan"')
    start = stdout.find("{") if start < 0 else start
    if start < 0:
        raise ValueError("pyinfra printed no --json document")
    found, _ = json.JSONDecoder().raw_decode(stdout, start)
    return cast(dict[str, Any], found)


def totals(stdout: str) -> dict[str, int]:
    """The run's totals: ``success`` counts the operations that changed something, ``no_change``, ``error``."""
    return cast(dict[str, int], document(stdout)["results"]["totals"])


def changes(stdout: str) -> list[str]:
    """What the run changed or failed, as "HOST: OPERATION" ("... (error)" for a failure), so that an
    idempotence assertion names the operation instead of a count."""
    return [
        f"{host}: {op['name']}{' (error)' if host in op['error'] else ''}"
        for op in document(stdout)["results"]["operations"]
        for host in op["success"] + op["error"]
    ]
