"""The cluster's local OCI registry on the hosts of group ``registry``: Debian's ``docker-registry``
(CNCF distribution 2.8) over HTTPS, with bcrypt htpasswd auth.

    PODINFRA_LAB=NAME pyinfra -y inventories/lab.py deploys/registry.py

Host data, with defaults:

``registry_port`` (5000)
    The registry listens on 0.0.0.0:PORT.
``registry_data_dir`` ("/var/lib/docker-registry")
    Where blobs and manifests are stored on the host.
``registry_address`` (``ssh_hostname``, else the host's name)
    The address nodes pull from. It goes into the certificate (IP or DNS SAN, next to the host's
    name), and the health check connects to it.
``registry_users`` (users ``pull`` and ``push`` with random passwords)
    ``{user: password}``. Without it, podinfra makes the passwords once and keeps them on the
    control host in ``PKI_DIR/HOST/users.json``. distribution's htpasswd auth has no roles: every
    user may pull *and push*; the names only say what each is meant for.
``registry_tls`` ("podinfra")
    "podinfra": a certificate from podinfra's own CA, both made on the control host.
    "provided": ``registry_tls_cert`` and ``registry_tls_key``, PEM files on the control host
    (the certificate may carry its chain), and optionally ``registry_tls_ca``, the CA file the
    health check verifies with (without it, the host's trust store).
``podinfra_pki_dir`` ("/var/lib/podinfra/pki")
    On the control host: the CA (``ca.crt``, ``ca.key``) and per host ``server.crt``,
    ``server.key``, ``htpasswd``, ``users.json``. Keep it: nodes trust this CA.

Missing or bad data stops the run while pyinfra prepares, before any host is changed.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from pyinfra import host
from pyinfra.api import FactBase, deploy
from pyinfra.operations import apt, files, server, systemd
from pyinfra.operations.util import any_changed

from podinfra.hostdata import RegistrySettings, registry_settings

TEMPLATES = Path(__file__).resolve().parents[1] / "templates" / "registry"
SERVICE = "docker-registry.service"
# Debian's unit runs `docker-registry serve /etc/docker/registry/config.yml` as User=docker-registry
# (no Group=, so its primary group docker-registry).
SERVICE_USER = "docker-registry"
CONFIG = "/etc/docker/registry/config.yml"
CERT = "/etc/docker/registry/registry.crt"
CA = "/etc/docker/registry/ca.crt"
# The key and htpasswd sit in a 0750 root:docker-registry directory and are 0640 root:docker-registry:
# the service reads them through its group but cannot change them, other users cannot even list
# them, and a fresh upload (created 0644 before its chmod) is never exposed.
PRIVATE = "/etc/docker/registry/private"
KEY = f"{PRIVATE}/registry.key"
HTPASSWD = f"{PRIVATE}/htpasswd"


def _curl(url: str, cacert: str, *extra: str) -> list[str]:
    """curl printing only the HTTP status ("000" when nothing answered over TLS)."""
    tls = ["--cacert", cacert] if cacert else []
    return ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", *tls, *extra, url]


class AnonymousStatus(FactBase[str]):
    """The HTTP status an anonymous request to ``url`` gets now."""

    def command(self, url: str, cacert: str) -> str:
        return f"{shlex.join(_curl(url, cacert))} 2>/dev/null || true"

    def process(self, output: list[str]) -> str:
        return "".join(output).strip()


@deploy("podinfra registry")
def registry(settings: RegistrySettings) -> None:
    # Both are on the lab's node image and nodes cannot reach a mirror: this only checks, and only
    # an absent package would make apt try to fetch it. curl is for the health check.
    apt.packages(name="docker-registry and curl are installed", packages=["docker-registry", "curl"])
    # Debian makes it 0755; blobs of private images are no other local user's business.
    files.directory(name="Registry storage", path=settings.data_dir, user=SERVICE_USER, group=SERVICE_USER, mode="0750")
    files.directory(name="Directory for key and htpasswd", path=PRIVATE, user="root", group=SERVICE_USER, mode="0750")
    cert = files.put(name="TLS certificate", src=str(settings.cert), dest=CERT, user="root", group="root", mode="0644")
    key = files.put(name="TLS key", src=str(settings.key), dest=KEY, user="root", group=SERVICE_USER, mode="0640")
    htpasswd = files.put(
        name="htpasswd (bcrypt)",
        src=str(settings.htpasswd),
        dest=HTPASSWD,
        user="root",
        group=SERVICE_USER,
        mode="0640",
    )
    # For the health check; the registry itself does not read it, so it needs no restart.
    if settings.ca:
        ca = files.put(name="CA certificate", src=str(settings.ca), dest=CA, user="root", group="root", mode="0644")
    else:
        ca = files.file(name="No CA certificate (host trust store)", path=CA, present=False)
    config = files.template(
        name="Registry config",
        src=str(TEMPLATES / "config.yml.j2"),
        dest=CONFIG,
        user="root",
        group="root",
        mode="0644",
        port=settings.port,
        data_dir=settings.data_dir,
        certificate=CERT,
        key=KEY,
        htpasswd=HTPASSWD,
    )
    changed = (config, cert, key, htpasswd)
    started = systemd.service(name="docker-registry enabled and running", service=SERVICE, running=True, enabled=True)
    systemd.service(
        name="Restart docker-registry for its new config",
        service=SERVICE,
        running=True,
        restarted=True,
        _if=any_changed(*changed),
    )

    # Auth is always on, so a healthy registry refuses an anonymous /v2/ with 401. A check on
    # every run would report a change on every run, so check after a change, or when the registry
    # did not answer 401 before this run: a run after a failed one must fail again, not pass idle.
    host_part = f"[{settings.address}]" if ":" in settings.address else settings.address
    url = f"https://{host_part}:{settings.port}/v2/"
    cacert = CA if settings.ca else ""
    answered_before = host.get_fact(AnonymousStatus, url=url, cacert=cacert)
    retry = ["--retry", "10", "--retry-connrefused", "--retry-delay", "1"]
    server.shell(
        name=f"Registry answers 401 at {url}",
        commands=[
            f'code=$({shlex.join(_curl(url, cacert, *retry))}); [ "$code" = 401 ] '
            f'|| {{ echo "{url} answered HTTP $code, expected 401" >&2; exit 1; }}'
        ],
        _if=lambda: answered_before != "401" or any_changed(*changed, ca, started)(),
    )


if "registry" in host.groups:
    registry(registry_settings(host))
