"""An example inventory for a real air-gapped fleet, as the README's "On your own fleet" shows it:
copy it, change names, addresses and secrets.

    pyinfra -y airgap-example.py podinfra.deploys.local_registry --limit k8s_registry
    pyinfra -y airgap-example.py podinfra.deploys.pause_mirror --limit k8s_registry  # control host reaches upstream
    pyinfra -y airgap-example.py podinfra.deploys.node_runtime --limit k8s_workers
    podinfra check airgap-example.py --group k8s_workers

Every key podinfra reads is in the README's table (podinfra/data/models.py); bad values stop the run
before any host is touched, misspelt keys with "did you mean".
"""

from pathlib import Path

REGISTRY = "10.20.0.5"  # the local registry's host, inside the gap
WORKERS = {"worker-a": "10.20.0.11", "worker-b": "10.20.0.12", "worker-c": "10.20.0.13"}
SSH = {"ssh_user": "root"}  # and ssh_key, ssh_port, ... as pyinfra reads them
PKI = "/var/lib/podinfra/pki"  # on this control host: podinfra's CA and the registry's certificate
SECRETS = Path(__file__).parent / "secrets"  # pull.pw and push.pw: the registry's two users

_users = {user: (SECRETS / f"{user}.pw").read_text().strip() for user in ("pull", "push")}
_all = {**SSH, "kubernetes_version": "1.31", "podinfra_pki_dir": PKI}
_node = {
    "local_registry": f"{REGISTRY}:5000",
    "registry_ca": f"{PKI}/ca.crt",  # or "system" for a registry the nodes already trust
    "airgap_probe": "registry.k8s.io:443",  # an upstream the nodes must not reach
    "restart_batch": 2,  # containerd restarts 2 nodes at a time
    "max_failed_nodes": 0,  # the first node whose containerd does not come back stops the rollout
    # "sandbox_image_mode": "local",  # nodes told 10.20.0.5:5000/pause:TAG@sha256:... instead
}

k8s_registry = [("mirror-1", {**_all, "ssh_hostname": REGISTRY, "registry_users": _users})]
k8s_workers = [
    (name, {**_all, **_node, "ssh_hostname": address, "registry_pull_password": _users["pull"]})
    for name, address in WORKERS.items()
]
