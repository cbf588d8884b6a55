"""Every node of group ``nodes`` starts its pod sandboxes from the local registry's pause image.

    PODINFRA_LAB=NAME pyinfra -y inventories/lab.py deploys/node.py

On each node, by its runtime (read as a fact):
- containerd: ``hosts.toml`` under ``containerd_certs_dir`` for each mirrored registry and for the
  local registry itself (``server`` is the local registry: no fallback to the public one), the
  registry CA, the sandbox image and ``config_path`` at the key paths of the node's config
  version (2 for 1.6/1.7, 3 for 2.0-2.2, 4 for 2.3+). The operator's config.toml is edited, not
  replaced: every other setting and comment survives (``podinfra.runtime_config``). containerd
  restarts only when its config changed, ``restart_batch`` nodes at a time, and a node whose
  containerd does not come back gets its previous config back and fails; once more than
  ``max_failed_nodes`` have failed, the remaining nodes keep their previous config unrestarted.
- CRI-O: a ``crio.conf.d`` drop-in (``pause_image``, ``pinned_images``) and a
  ``registries.conf.d`` mirror entry; crio restarts when they change.
- the pause image pre-pulled into ``k8s.io`` and labelled pinned, so image GC keeps it;
- the kubelet flags file: ``--pod-infra-container-image`` equal to the sandbox image below
  Kubernetes 1.35, absent from 1.35 on.

Settings: ``podinfra.hostdata.node_settings``. All data is checked before any host is touched.
"""

from __future__ import annotations

import base64
import shlex
from collections.abc import Generator

from pyinfra import host, logger
from pyinfra.api import StringCommand, operation
from pyinfra.api.exceptions import OperationError
from pyinfra.operations import systemd

from podinfra import runtime_config
from podinfra.facts import ContainerdVersion, CrioVersion, PinnedImage, TextFile
from podinfra.hostdata import node_settings
from podinfra.operations import config_file, containerd_restarted, rollout
from podinfra.reference import cri_name
from podinfra.registry import RegistryError
from podinfra.settings import NODE_CA, NodeSettings


def sandbox_image(settings: NodeSettings) -> str:
    """The reference the runtime is told to use for sandboxes (the local digest asked once a run)."""
    if settings.mode == "canonical":
        return settings.sandbox_image(None)
    try:
        digest: str | None = settings.pause_digest()
    except RegistryError as e:
        logger.warning(f"{settings.registry}: pause digest unknown ({e}); the sandbox image is set by tag only")
        digest = None
    return settings.sandbox_image(digest)


@operation()
def pause_pinned(image: str, certs_dir: str) -> Generator[object, None, None]:
    """Pull `image` into containerd's k8s.io namespace and label it pinned against image GC."""
    name = cri_name(image)
    state = host.get_fact(PinnedImage, image=name)
    if state == "pinned":
        host.noop(f"{name} is present and pinned")
        return
    if state is None:
        yield StringCommand(
            "ctr", "-n", "k8s.io", "images", "pull", "--hosts-dir", certs_dir, shlex.quote(name), ">/dev/null"
        )
    yield StringCommand("ctr", "-n", "k8s.io", "images", "label", shlex.quote(name), "io.cri-containerd.pinned=pinned")


def registry_files(settings: NodeSettings) -> None:
    """CA and hosts.toml: the runtime reaches the local registry, and only it, for each mirrored registry."""
    if settings.ca:
        config_file(name="Registry CA", path=NODE_CA, content=settings.ca.read_text(), mode="0644")
    authorization = None
    if settings.pull_password:
        token = base64.b64encode(f"{settings.pull_user}:{settings.pull_password}".encode()).decode()
        authorization = f"Basic {token}"
    mirror = f"https://{settings.registry}"
    for upstream in (*settings.mirrored, settings.registry):
        # Images kept under a prefix answer at /v2/PREFIX, which containerd reaches with override_path.
        prefixed = settings.prefix and upstream != settings.registry
        content = runtime_config.hosts_toml(
            upstream=upstream,
            mirror=mirror,
            ca_file=NODE_CA if settings.ca else None,
            authorization=authorization,
            override_path=f"/v2/{settings.prefix}" if prefixed else None,
        )
        config_file(
            name=f"hosts.toml for {upstream}",
            path=f"{settings.certs_dir}/{upstream}/hosts.toml",
            content=content,
            mode="0600" if authorization else "0644",  # it may carry the pull credentials
        )


def containerd(settings: NodeSettings, version: str, image: str) -> None:
    existing = host.get_fact(TextFile, path=settings.containerd_config)
    for key in runtime_config.stale_keys(existing or "", version) if existing else ():
        logger.warning(f"{host.name}: {settings.containerd_config}: {key} is ignored by containerd {version}; removed")
    try:
        content = runtime_config.edit_containerd_config(existing, version, image, settings.certs_dir)
    except runtime_config.ConfigError as e:
        raise OperationError(f"{settings.containerd_config}: {e}") from None
    config = config_file(name=f"containerd {version} sandbox image", path=settings.containerd_config, content=content)
    containerd_restarted(
        name="Restart containerd, or roll back",
        image=image,
        rollout=rollout(settings.max_failed_nodes, settings.restart_batch),
        config=settings.containerd_config,
        _if=config.did_change,
        _parallel=settings.restart_batch,
    )
    pause_pinned(name=f"{image} pulled and pinned", image=image, certs_dir=settings.certs_dir)


def crio(settings: NodeSettings, image: str) -> None:
    dropin = config_file(
        name="CRI-O pause image",
        path="/etc/crio/crio.conf.d/10-podinfra-pause.conf",
        content=runtime_config.crio_dropin(image),
    )
    upstream = "registry.k8s.io"
    location = f"{settings.registry}/{settings.prefix}" if settings.prefix else settings.registry
    mirrors = config_file(
        name="CRI-O registry mirror",
        path="/etc/containers/registries.conf.d/10-podinfra-mirror.conf",
        content=runtime_config.crio_registries_conf(upstream, location),
    )
    systemd.service(
        name="Restart CRI-O",
        service="crio",
        restarted=True,
        _if=lambda: dropin.did_change() or mirrors.did_change(),
        _parallel=settings.restart_batch,
    )


def kubelet(settings: NodeSettings, image: str) -> None:
    existing = host.get_fact(TextFile, path=settings.kubelet_flags_file)
    content = runtime_config.kubelet_flags(existing, settings.kubernetes_version, image)
    config_file(name="kubelet flags", path=settings.kubelet_flags_file, content=content)


if "nodes" in host.groups:
    _settings = node_settings(host)
    _image = sandbox_image(_settings)
    _containerd = host.get_fact(ContainerdVersion)
    _crio = None if _containerd else host.get_fact(CrioVersion)
    if not (_containerd or _crio):
        raise OperationError(f"{host.name}: neither containerd nor CRI-O is installed")
    registry_files(_settings)
    if _containerd:
        containerd(_settings, _containerd, _image)
    else:
        crio(_settings, _image)
    kubelet(_settings, _image)
