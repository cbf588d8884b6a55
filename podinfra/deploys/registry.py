"""The cluster's local OCI registry: Debian's ``docker-registry`` (CNCF distribution 2.8) on loopback,
behind Debian's ``nginx`` for HTTPS and users, where only the push user may write.

distribution's htpasswd auth has no roles: every user it knows may pull *and push*, so the
credential every node holds could replace the pause image for the whole fleet. nginx checks each
request instead (the front distribution's own docs describe): reads (GET, HEAD) need any user of
the htpasswd file, writes need ``registry_push_user``, and the registry itself listens on
127.0.0.1 only. TLS and the htpasswd file come from the control host (podinfra's CA, or
certificates the operator provides). Settings: ``podinfra.data.models.RegistryData``.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

from pyinfra import logger
from pyinfra.api.command import FunctionCommand
from pyinfra.api.deploy import deploy
from pyinfra.api.host import Host
from pyinfra.api.operation import operation
from pyinfra.api.state import State
from pyinfra.context import host
from pyinfra.operations import apt, files, server, systemd
from pyinfra.operations.util import any_changed

from podinfra.data import pki
from podinfra.data.settings import RegistrySettings, registry_settings
from podinfra.node.facts import HttpStatus
from podinfra.render import TEMPLATES

REGISTRY = "docker-registry.service"
# Debian's unit runs `docker-registry serve /etc/docker/registry/config.yml` as User=docker-registry.
SERVICE_USER = "docker-registry"
CONFIG = "/etc/docker/registry/config.yml"
NGINX_CONF = "/etc/nginx/conf.d/podinfra-registry.conf"
NGINX_GROUP = "www-data"  # Debian's nginx workers, which read the htpasswd file on every request
TLS = "/etc/podinfra/registry"
CERT, KEY, HTPASSWD, CA = (f"{TLS}/tls.crt", f"{TLS}/tls.key", f"{TLS}/htpasswd", f"{TLS}/ca.crt")
# What an earlier podinfra (the registry serving TLS and htpasswd itself) left there.
OLD_FILES = ("/etc/docker/registry/registry.crt", "/etc/docker/registry/ca.crt")
OLD_DIRS = ("/etc/docker/registry/private",)


@operation()
def pki_kept(settings: RegistrySettings) -> Generator[Any]:
    """Write what this run made of podinfra's PKI (planned in a scratch copy) into podinfra_pki_dir on the
    control host, when the run executes: so a --dry run leaves the directory as it was."""
    paths = settings.pending
    if not paths:
        host.noop(f"{settings.pki_dir} holds the CA, certificate and users")
        return
    if settings.pki_dir is not None and settings.pki_dir / "ca.crt" in paths:
        host.log(f"would create podinfra's CA in {settings.pki_dir}", logger.info)
    for path in paths:
        host.log(f"would write {path}", logger.info)
    yield FunctionCommand(_commit, (settings.pki_dir, paths), {})


def _commit(state: State, host: Host, directory: Path, paths: list[Path]) -> bool:
    try:
        pki.commit(directory, paths)
    except pki.PkiError as e:
        logger.error(f"{host.print_prefix}host data podinfra_pki_dir: {e}")
        return False
    return True


def backend_port(port: int) -> int:
    """The registry's own loopback port: 5001, or 5002 when nginx serves 5001."""
    return 5002 if port == 5001 else 5001


@deploy("podinfra registry")
def local_registry(settings: RegistrySettings | None = None) -> None:
    """docker-registry behind nginx, answering nodes over HTTPS; a second run changes nothing.

    `settings` default to the host's inventory data (``podinfra.data.settings.registry_settings``).

    **Example:**

    .. code:: python

        from podinfra.deploys import local_registry

        local_registry()
    """
    settings = settings or registry_settings(host)
    backend = backend_port(settings.port)
    if settings.pki_dir is not None:
        made = "podinfra's CA, " if settings.pki_dir / "ca.crt" in settings.pending else ""
        pki_kept(
            name=f"{made}{host.name}'s certificate and users in {settings.pki_dir} (control host)", settings=settings
        )
    # On the lab's node image already (nodes cannot reach a mirror): this only checks, and only an absent
    # package makes apt try to fetch it. curl is for the health check.
    apt.packages(name="docker-registry, nginx and curl are installed", packages=["docker-registry", "nginx", "curl"])
    files.directory(name="Registry storage", path=settings.data_dir, user=SERVICE_USER, group=SERVICE_USER, mode="0750")
    files.directory(name="Directory for TLS and users", path=TLS, user="root", group=NGINX_GROUP, mode="0750")
    cert = files.put(name="TLS certificate", src=str(settings.cert), dest=CERT, user="root", group="root", mode="0644")
    key = files.put(name="TLS key", src=str(settings.key), dest=KEY, user="root", group="root", mode="0600")
    files.put(
        name="htpasswd (bcrypt push user, {SSHA} read-only users)",
        src=str(settings.htpasswd),
        dest=HTPASSWD,
        user="root",
        group=NGINX_GROUP,
        mode="0640",
    )
    if settings.ca:
        ca = files.put(name="CA certificate", src=str(settings.ca), dest=CA, user="root", group="root", mode="0644")
    else:
        ca = files.file(name="No CA certificate (host trust store)", path=CA, present=False)
    for old in OLD_FILES:
        files.file(name=f"No {old} (older layout)", path=old, present=False)
    for old in OLD_DIRS:
        files.directory(name=f"No {old} (older layout)", path=old, present=False)
    registry_config = files.template(
        name="Registry config (loopback only)",
        src=str(TEMPLATES / "registry" / "config.yml.j2"),
        dest=CONFIG,
        user="root",
        group="root",
        mode="0644",
        data_dir=settings.data_dir,
        backend_port=backend,
    )
    systemd.service(name="docker-registry enabled and running", service=REGISTRY, running=True, enabled=True)
    systemd.service(
        name="Restart docker-registry for its new config",
        service=REGISTRY,
        running=True,
        restarted=True,
        _if=registry_config.did_change,
    )
    files.link(name="No default nginx site", path="/etc/nginx/sites-enabled/default", present=False)
    front = files.template(
        name="nginx front: TLS, users, only the push user writes",
        src=str(TEMPLATES / "registry" / "nginx.conf.j2"),
        dest=NGINX_CONF,
        user="root",
        group="root",
        mode="0644",
        port=settings.port,
        backend_port=backend,
        certificate=CERT,
        key=KEY,
        htpasswd=HTPASSWD,
        push_user=settings.push_user,
    )
    changed = (front, cert, key)
    server.shell(name="nginx accepts its config", commands=["nginx -t -q"], _if=any_changed(*changed))
    started = systemd.service(name="nginx enabled and running", service="nginx.service", running=True, enabled=True)
    systemd.service(
        name="Restart nginx for its new config", service="nginx.service", restarted=True, _if=any_changed(*changed)
    )
    _healthy(settings, changed + (registry_config, ca, started))


def _healthy(settings: RegistrySettings, changed: tuple[object, ...]) -> None:
    """Auth is always on, so a healthy registry refuses an anonymous /v2/ with 401. Checked after a change,
    or when the registry did not answer 401 before this run: a run after a failed one fails again."""
    url = f"{settings.url}/v2/"
    cacert = CA if settings.ca else ""
    answered_before = host.get_fact(HttpStatus, url=url, cacert=cacert)
    tls = f"--cacert {cacert} " if cacert else ""
    server.shell(
        name=f"Registry answers 401 at {url}",
        commands=[
            f"code=$(curl -sS -o /dev/null -w '%{{http_code}}' --max-time 5 --retry 10 --retry-connrefused "
            f'--retry-delay 1 {tls}{url}); [ "$code" = 401 ] '
            f'|| {{ echo "{url} answered HTTP $code, expected 401" >&2; exit 1; }}'
        ],
        _if=lambda: answered_before != "401" or any_changed(*changed)(),  # type: ignore[arg-type]
    )
