"""pyinfra inventory of the built-in lab: `pyinfra inventories/lab.py exec -- hostname`.

Reads the lab's state file; PODINFRA_LAB names the lab (default "lab").
"""

import json
import os

from podinfra.lab.state import LabState
from podinfra.versions import newest_kubernetes

_state = LabState.load(os.environ.get("PODINFRA_LAB", "lab"))
_ssh = {
    "ssh_user": "root",
    "ssh_key": str(_state.ssh_key),
    "ssh_known_hosts_file": str(_state.known_hosts),
    "ssh_strict_host_key_checking": "yes",
    # The lab's own CA and registry credentials live and die with the lab.
    "podinfra_pki_dir": str(_state.config.root / "pki"),
    # The lab's upstream stands in for registry.k8s.io, on the control host's loopback.
    "pause_source": _state.upstream,
    "pause_source_insecure": True,
    "kubernetes_version": os.environ.get("PODINFRA_KUBERNETES_VERSION", newest_kubernetes()),
}


_registry = next(n for n in _state.nodes if n.group == "registry")
_pki = _state.config.root / "pki"
_users = _pki / _registry.name / "users.json"
# Written by deploys/registry.py; nodes pull with its read user.
_nodes = {
    "local_registry": f"{_registry.address}:5000",
    "registry_ca": str(_pki / "ca.crt"),
    **({"registry_pull_password": json.loads(_users.read_text())["pull"]} if _users.exists() else {}),
    # Upstream as a node would try it: the host's bridge address; `podinfra check` proves it unreachable.
    "airgap_probe": f"{_state.config.gateway}:{_state.config.upstream_port}",
}


def _group(name: str) -> list[tuple[str, dict[str, object]]]:
    extra = _nodes if name == "nodes" else {}
    # lab_runtime/lab_runtime_version: what the lab booted, for lab tests; podinfra itself never reads them.
    return [
        (
            n.name,
            {
                "ssh_hostname": n.address,
                **_ssh,
                **extra,
                "lab_runtime": n.runtime_name,
                "lab_runtime_version": n.version,
            },
        )
        for n in _state.nodes
        if n.group == name
    ]


nodes = _group("nodes")
registry = _group("registry")
