"""A node starts its pod sandboxes from the local registry's pause image.

First, from the control host: the local registry must serve the node's pause tag to the node's
credentials, verified with its CA (preflight); otherwise the node fails, untouched. The preflight is
asked when the run is planned; when the registry does not serve the tag yet, it is asked again as
the node's first operation, when the run gets there: a deploy file that calls ``local_registry`` and
``pause_mirror`` before ``node_runtime`` makes and fills the registry earlier in the same run
(pyinfra runs operations in the order the deploy file calls them). Then on the node, by the runtime it
runs (``podinfra.node.runtime``: ``cri_socket``, the kubelet's endpoint, the service that runs, the
binary installed; both running and no cri_socket: refused):

- containerd: ``hosts.toml`` under ``containerd_certs_dir`` for each mirrored registry and for the
  local registry itself (``server`` is the local registry: no fallback to the public one), the
  registry CA, and the sandbox image and ``config_path`` at the key paths of the config version
  of the file the daemon reads (2 for 1.6/1.7, 3 for 2.0-2.2, 4 for 2.3+; a version 2 file on
  2.x is edited as version 2, which 2.x migrates in memory). The operator's config.toml is
  edited, not replaced: every other setting and comment survives (``podinfra.node.containerd.config``).
  containerd restarts whenever a file it reads changed after it started, ``restart_batch`` nodes
  at a time (a number, or a share of the run's hosts: "10%"), and must come back with those values in
  its effective config, or it gets its previous config back and the node fails; once more than
  ``max_failed_nodes`` have failed, the remaining nodes keep their previous config unrestarted.
- CRI-O: the registry CA in ``/etc/containers/certs.d/HOST:PORT/ca.crt``, the pull credential in
  a containers-auth.json (0600) that a ``crio.conf.d`` drop-in names as ``global_auth_file`` beside
  ``pause_image``, and a ``registries.conf.d`` entry rewriting each mirrored registry to the local
  registry (no fallback). A later drop-in that sets those keys has them commented out. CRI-O reloads
  (pause_image, registries.conf) or restarts (global_auth_file), in batches, must then run those values
  (``crio status config``), or the files go back and the node fails; then it pulls the pause image, and
  an older pause no sandbox was made from is removed where ``old_pause`` is "remove" (CRI-O unpins it itself).
- the pause image pre-pulled into ``k8s.io`` and labelled pinned, so image GC keeps it; an older
  pause no container uses any more unpinned (``old_pause``);
- where a kubelet is installed (or ``kubelet_flags_create``), its flags file:
  ``--pod-infra-container-image`` equal to the sandbox image below Kubernetes 1.35, absent from
  1.35 on; the kubelet restarts, in batches, when they changed.

A node whose runtime or config podinfra cannot handle fails alone, named, with one line.
"""

from __future__ import annotations

import base64
from collections.abc import Generator
from typing import Any

from pyinfra import logger
from pyinfra.api.command import FunctionCommand
from pyinfra.api.deploy import deploy
from pyinfra.api.host import Host
from pyinfra.api.operation import operation
from pyinfra.api.state import State
from pyinfra.context import host, state
from pyinfra.facts.files import FileContents
from pyinfra.facts.server import Which
from pyinfra.operations import systemd

from podinfra.data.models import NODE_CA, NodeData
from podinfra.data.settings import node_settings
from podinfra.errors import ConfigError
from podinfra.images.reference import cri_name
from podinfra.images.registry import RegistryError
from podinfra.node import crio as crio_files
from podinfra.node import registries as registries_conf
from podinfra.node import runtime_files
from podinfra.node.containerd.config import edit
from podinfra.node.containerd.daemon import DEFAULT_CONFIG
from podinfra.node.facts import ContainerdDaemon, CrioConfigFiles, CrioRegistriesFiles, NodeRuntime
from podinfra.node.operations import (
    backup_path,
    config_file,
    crio_old_pause_released,
    crio_pause_pulled,
    failed,
    old_pause_released,
    pause_pinned,
)
from podinfra.node.restart import Written, containerd_restarted, crio_restarted, rollout
from podinfra.node.runtime import CRIO, NoRuntime, choose


def preflight(settings: NodeData, phase: str = "plan") -> tuple[str | None, str]:
    """(the pause digest, '') when the local registry serves the node's pause tag to the node's
    credentials, verified with its CA, all asked from the control host before the node is touched
    (once a run and phase per registry and credentials); else (None, what to do first)."""
    try:
        return settings.pause_digest_in_registry(phase), ""
    except RegistryError as e:
        return None, (
            f"preflight from the control host: {e}; node left as it was "
            "(host data: local_registry, registry_ca, registry_pull_user, registry_pull_password)"
        )


@operation()
def registry_serves_pause(settings: NodeData) -> Generator[Any]:
    """Fail this node, untouched, unless the local registry serves its pause tag when the run gets here:
    the preflight asked again, after this run's own operations that make or fill the registry."""
    yield FunctionCommand(_preflight_again, (settings,), {})


def _preflight_again(state: State, host: Host, settings: NodeData) -> bool:
    _, refused = preflight(settings, phase="run")
    if refused:
        logger.error(f"{host.print_prefix}{refused}")
    return not refused


def _text(path: str) -> str | None:
    lines = host.get_fact(FileContents, path=path)
    return None if lines is None else "".join(f"{line}\n" for line in lines)


def registry_files(settings: NodeData) -> None:
    """CA and hosts.toml: the runtime reaches the local registry, and only it, for each mirrored registry."""
    if settings.ca:
        config_file(name="Registry CA", path=NODE_CA, content=settings.ca.read_text(), mode="0644")
    authorization, secrets = None, []
    if settings.registry_pull_password:
        token = base64.b64encode(f"{settings.registry_pull_user}:{settings.registry_pull_password}".encode()).decode()
        authorization, secrets = f"Basic {token}", [token]
    mirror = f"https://{settings.local_registry}"
    for upstream, path in settings.hosts_toml.items():
        # Images kept under a prefix answer at /v2/PREFIX, which containerd reaches with override_path.
        prefixed = settings.registry_prefix and upstream != settings.local_registry
        content = runtime_files.hosts_toml(
            upstream=upstream,
            mirror=mirror,
            ca_file=NODE_CA if settings.ca else None,
            authorization=authorization,
            override_path=f"/v2/{settings.registry_prefix}" if prefixed else None,
        )
        config_file(
            name=f"hosts.toml for {upstream}",
            path=path,
            content=content,
            mode="0600" if authorization else "0644",  # it may carry the pull credentials
            secrets=secrets,
        )


def _fleet() -> int:
    """The hosts of this run: pyinfra's batches (``_parallel``) are cut from them, and shares are of them."""
    return len(state.inventory.get_active_hosts())


def _batch(settings: NodeData) -> int:
    return settings.restart_nodes(_fleet())


def containerd(settings: NodeData, version: str, image: str) -> bool:
    running = host.get_fact(ContainerdDaemon)
    config = settings.containerd_config or (running.config if running and running.pid else DEFAULT_CONFIG)
    if running and running.pid and running.config != config:
        failed(
            name="containerd config file",
            reason=f"containerd runs with --config {running.config}, but containerd_config is {config}: "
            "set containerd_config to the file the daemon reads",
        )
        return False
    try:
        result = edit(_text(config), version, image, settings.containerd_certs_dir)
    except ConfigError as e:
        failed(name=f"containerd {version} config", reason=f"{config}: {e}")
        return False
    for note in result.notes:
        logger.warning(f"{host.print_prefix}{config}: {note}")
    registry_files(settings)
    written = config_file(
        name="containerd config: sandbox image and registry config_path", path=config, content=result.text
    )
    containerd_restarted(
        name="containerd runs its config (restarted in batches, rolled back if it does not come back right)",
        image=image,
        config_path=settings.containerd_certs_dir,
        containerd_version=version,
        config=config,
        written=written,
        rollout=rollout(settings.failed_nodes_allowed(_fleet()), _batch(settings)),
        _parallel=_batch(settings),
    )
    pause_pinned(name=f"{image} pulled and pinned", image=image, certs_dir=settings.containerd_certs_dir)
    old_pause_released(name="older pause images released once unused", image=image, policy=settings.old_pause)
    return True


def crio(settings: NodeData, image: str, socket: str) -> None:
    """CRI-O reads the CA, the pull credential and the local registry where it looks for them
    (containers-certs.d, a containers-auth.json named by global_auth_file, registries.conf.d), runs
    pause_image from its drop-in (later drop-ins that set it commented out, naming podinfra's), and holds
    the pause image."""
    registry = settings.local_registry
    location = f"{registry}/{settings.registry_prefix}" if settings.registry_prefix else registry
    ours = crio_files.registries_conf([u for u in settings.mirrored_registries if u != registry], location)
    found: list[tuple[str, str]] = host.get_fact(CrioRegistriesFiles)
    files = registries_conf.with_file(found, crio_files.REGISTRIES_DROPIN, ours)
    wanted = list(registries_conf.references(image, settings.mirrored_registries, registry).values())
    try:
        # Where a table of another file decides (the same prefix read later, or a longer one), ours is not read.
        overrides = registries_conf.overriding(files, wanted, registry, crio_files.REGISTRIES_DROPIN)
    except ConfigError as e:
        failed(name="CRI-O registries", reason=str(e))
        return
    if settings.ca:
        config_file(name="Registry CA for CRI-O", path=crio_files.ca_path(registry), content=settings.ca.read_text())
    auth = None
    if settings.pull_credentials:
        auth = crio_files.AUTH_FILE
        user, password = settings.pull_credentials
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        config_file(
            name="CRI-O pull credential (the read-only user)",
            path=auth,
            content=crio_files.auth_json(registry, user, password),
            mode="0600",
            secrets=[password, token],
        )
    registries = [
        config_file(
            name="CRI-O registries: mirrored registries at the local registry only",
            path=crio_files.REGISTRIES_DROPIN,
            content=ours,
        )
    ]
    written = [Written(registries[0], crio_files.REGISTRIES_DROPIN, backup_path(crio_files.REGISTRIES_DROPIN))]
    for path, (prefixes, text) in overrides.items():
        registries.append(
            config_file(
                name=f"{path}: [[registry]] {', '.join(prefixes)} left to podinfra's drop-in", path=path, content=text
            )
        )
        written.append(Written(registries[-1], path, backup_path(path)))
    dropin = config_file(
        name="CRI-O drop-in: pause image and auth file",
        path=crio_files.DROPIN,
        content=crio_files.dropin(image, auth),
        aside=crio_files.ASIDE,
    )
    written.append(Written(dropin, crio_files.DROPIN, backup_path(crio_files.DROPIN, crio_files.ASIDE)))
    crio_conf: list[tuple[str, str]] = host.get_fact(CrioConfigFiles)
    for path, keys in crio_files.overridden(crio_conf).items():
        text = _text(path) or ""
        edited = config_file(
            name=f"{path}: {', '.join(keys)} left to podinfra's drop-in",
            path=path,
            content=crio_files.without_keys(text, keys),
            aside=crio_files.ASIDE,
        )
        written.append(Written(edited, path, backup_path(path, crio_files.ASIDE)))
    crio_restarted(
        name="CRI-O runs its config (reloaded or restarted in batches, rolled back if it does not come back right)",
        image=image,
        auth_file=auth,
        written=written,
        registries=registries,
        rollout=rollout(settings.failed_nodes_allowed(_fleet()), _batch(settings)),
        socket=socket,
        _parallel=_batch(settings),
    )
    crio_pause_pulled(name=f"{image} pulled by CRI-O", image=image, socket=socket)
    crio_old_pause_released(
        name="older pause images released once unused", image=image, policy=settings.old_pause, socket=socket
    )


def kubelet(settings: NodeData, image: str) -> None:
    """The kubelet flags file where a kubelet is installed (or ``kubelet_flags_create``); the kubelet
    restarts, in batches, only when its flags changed."""
    installed = host.get_fact(Which, command="kubelet") is not None
    existing = _text(settings.kubelet_flags_file)
    if not (installed or existing is not None or settings.kubelet_flags_create):
        return
    content = runtime_files.kubelet_flags(existing, settings.kubernetes_version, image)
    flags = config_file(name="kubelet flags", path=settings.kubelet_flags_file, content=content)
    if installed:
        systemd.service(
            name="Restart kubelet for its new flags",
            service="kubelet.service",
            restarted=True,
            _if=flags.did_change,
            _parallel=_batch(settings),
        )


@deploy("podinfra node runtime")
def node_runtime(settings: NodeData | None = None) -> None:
    """The node's runtime, registry mirrors and kubelet flags set for the local registry's pause image.

    `settings` default to the host's inventory data (``podinfra.data.settings.node_settings``).

    **Example:**

    .. code:: python

        from podinfra.deploys import node_runtime

        node_runtime()
    """
    settings = settings or node_settings(host)
    digest, refused = preflight(settings)
    if refused and settings.sandbox_image_mode == "local":
        # the sandbox image names the digest, so it must be known now, when the run is planned
        reason = f"{refused}; sandbox_image_mode local pins the digest the registry holds when the run starts"
        failed(name="preflight: the local registry serves the pause image", reason=reason)
        return
    if refused:
        registry_serves_pause(name="preflight: the local registry serves the pause image", settings=settings)
    image = settings.sandbox_image(digest if settings.sandbox_image_mode == "local" else None)
    try:
        choice = choose(host.get_fact(NodeRuntime, kubelet_flags_file=settings.kubelet_flags_file), settings.cri_socket)
    except NoRuntime as e:
        failed(name="container runtime", reason=str(e))
        return
    if choice.runtime == CRIO:
        # CRI-O pins its pause_image by matching it whole against the names in its store, where an image pulled
        # by tag and digest is filed under its digest alone: a pause_image with both would stay unpinned.
        crio(settings, cri_name(image), choice.socket)
    elif not containerd(settings, choice.version, image):
        return
    kubelet(settings, image)
