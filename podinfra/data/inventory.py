"""Read a pyinfra inventory file, and ``--data`` overrides, as pyinfra's CLI does."""

from __future__ import annotations

import argparse
import json
import runpy
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any


def parse_value(text: str) -> Any:
    """A ``--data`` value as ``pyinfra --data`` reads it: true/false, a whole number, JSON, else the text.

    (pyinfra_cli's own parser cannot be imported: importing pyinfra_cli monkey-patches the process with gevent.)

    >>> [parse_value(v) for v in ("false", "3", '["a"]', "10.0.0.1:5000")]
    [False, 3, ['a'], '10.0.0.1:5000']
    """
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_data(items: Iterable[str]) -> dict[str, Any]:
    """``KEY=VALUE`` overrides: ``parse_data(["airgap_probe=10.0.0.1:5000"]) == {"airgap_probe": "10.0.0.1:5000"}``."""
    data = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--data {item!r}: write KEY=VALUE")
        data[key] = parse_value(value)
    return data


def _is_group(name: str, value: Any) -> bool:
    # pyinfra's rule: a public module-level list of hosts (names or (name, data)), or a (hosts, data) tuple.
    if name.startswith("_"):
        return False
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], dict):
        value = value[0]
    return isinstance(value, list) and all(isinstance(item, str | tuple) for item in value)


def _group_data(folder: Path) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for file in sorted(folder.glob("*.py")) if folder.is_dir() else []:
        attrs = runpy.run_path(str(file))
        found[file.stem] = {
            k: v for k, v in attrs.items() if not k.startswith("_") and not isinstance(v, ModuleType | type)
        }
    return found


def load_inventory(path: str, data: Iterable[str] = ()) -> Any:
    """A pyinfra Inventory (``pyinfra.api``) of an inventory file, with ``--data`` overrides.

    The file is run with runpy and its groups read as pyinfra's CLI reads them: module-level lists of
    hosts or ``(name, data)`` tuples, ``(hosts, data)`` group tuples, ``group_data/GROUP.py`` next to
    the file or in the working directory, a group named after the file. Host objects are pyinfra's,
    so ``podinfra.data.settings`` reads them as the deploys do.

    >>> load_inventory("tests/unit/fleet.py", ["kubernetes_version=1.31"]).get_group("k8s_workers")
    [Host(worker-a), Host(worker-b)]
    """
    from pyinfra.api.inventory import Inventory

    file = Path(path)
    if not file.is_file():
        raise argparse.ArgumentTypeError(f"inventory {path}: no such file")
    groups: dict[str, tuple[list[Any], dict[str, Any]]] = {}
    for name, value in runpy.run_path(str(file)).items():
        if _is_group(name, value):
            hosts, group_data = value if isinstance(value, tuple) else (value, {})
            groups[name] = (list(hosts), dict(group_data))
    names = list(dict.fromkeys(h[0] if isinstance(h, tuple) else h for hosts, _ in groups.values() for h in hosts))
    all_hosts, all_data = groups.pop("all", (names, {}))
    groups.setdefault(file.stem, (names, {}))
    for folder in dict.fromkeys((Path.cwd() / "group_data", file.resolve().parent / "group_data")):
        for group, extra in _group_data(folder).items():
            if group == "all":
                all_data = {**all_data, **extra}
            else:
                hosts, known = groups.get(group, ([], {}))
                groups[group] = (hosts, {**known, **extra})
    return Inventory((all_hosts, all_data), override_data=parse_data(data), **groups)  # type: ignore[no-untyped-call]


def find_host(inventory: Any, name: str) -> Any:
    """The inventory's host called `name`, by its name or by its ``ssh_hostname`` (testinfra's ``--hosts``
    gives addresses): ``find_host(inventory, "10.213.0.11")``."""
    host = inventory.get_host(name, None)
    if host is not None:
        return host
    for candidate in inventory:
        if candidate.data.get("ssh_hostname") == name:
            return candidate
    raise RuntimeError(f"{name} is not in the inventory, by name or ssh_hostname: name it as the inventory does")
