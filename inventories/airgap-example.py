"""An example inventory for a real air-gapped fleet: copy it, change names, addresses and secrets.

    pyinfra inventories/airgap-example.py deploys/registry.py
    pyinfra inventories/airgap-example.py deploys/mirror.py      # from a host that reaches upstream
    pyinfra inventories/airgap-example.py deploys/node.py
    podinfra check inventories/airgap-example.py

Every key is documented in podinfra/hostdata.py; bad values stop the run before any host is touched.
"""

import json
import os
from pathlib import Path

PKI = Path(os.environ.get("PODINFRA_PKI_DIR", "/var/lib/podinfra/pki"))
# deploys/registry.py writes the generated credentials here on its first run.
USERS = PKI / "registry-1" / "users.json"

_common = {
    "ssh_user": "root",
    "kubernetes_version": "1.31",
    "podinfra_pki_dir": str(PKI),
}

registry = [
    (
        "registry-1",
        {
            **_common,
            "ssh_hostname": "10.20.0.5",
            "registry_port": 5000,
            "registry_data_dir": "/var/lib/docker-registry",
            "registry_tls": "podinfra",  # or "provided" with registry_tls_cert / registry_tls_key / registry_tls_ca
            # "registry_users": {"pull": "...", "push": "..."},  # default: generated and kept in PKI/HOST/users.json
            "pause_source": "registry.k8s.io",  # or a mirror of it that the control host reaches
            "mirror_images": [],
        },
    ),
]

nodes = [
    (
        name,
        {
            **_common,
            "ssh_hostname": address,
            "local_registry": "10.20.0.5:5000",
            "registry_ca": str(PKI / "ca.crt"),
            "registry_pull_user": "pull",
            **({"registry_pull_password": json.loads(USERS.read_text())["pull"]} if USERS.exists() else {}),
            "sandbox_image_mode": "canonical",  # or "local": rewrite to 10.20.0.5:5000/pause:TAG@sha256:...
            "mirrored_registries": ["registry.k8s.io"],
            "restart_batch": 2,  # containerd restarts 2 nodes at a time
            "airgap_probe": "registry.k8s.io:443",
        },
    )
    for name, address in [("node-1", "10.20.0.11"), ("node-2", "10.20.0.12"), ("node-3", "10.20.0.13")]
]
