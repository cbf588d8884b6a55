"""pyinfra operations for node configuration: atomic config files, a containerd that runs what its
files say (restarted in batches, rolled back when it does not come back right), the pause image
pulled and pinned, and a host failed with one line. A runtime restarted on its files: podinfra.node.restart.

    from podinfra.node.operations import config_file, pause_pinned

    written = config_file(name="containerd config", path="/etc/containerd/config.toml", content=text)
    pause_pinned(name="pause pinned", image=image, certs_dir="/etc/containerd/certs.d")
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Generator, Sequence
from io import StringIO
from typing import Any

from pyinfra import logger
from pyinfra.api.command import (
    FileUploadCommand,
    FunctionCommand,
    QuoteString,
    StringCommand,
    make_formatted_string_command,
)
from pyinfra.api.host import Host
from pyinfra.api.operation import operation
from pyinfra.api.state import State
from pyinfra.context import host, state
from pyinfra.facts.files import File, FileContents, Sha256File
from pyinfra.operations.util.files import generate_color_diff

from podinfra.data.settings import MirrorSettings
from podinfra.errors import PodinfraError
from podinfra.images import probe_image
from podinfra.images.mirror import RegistrySource, Summary, copy_image, registry_source
from podinfra.images.oci import Image
from podinfra.images.reference import Reference, ReferenceError, cri_name, under
from podinfra.images.registry import RegistryClient
from podinfra.node import cri_curl, crio
from podinfra.node.containerd import ctr
from podinfra.node.facts import (
    ContainerdImages,
    ContainerImages,
    CrioImage,
    CrioImages,
    CrioSandboxes,
    CrioSandboxImage,
)
from podinfra.table import plural

BACKUP = ".podinfra-backup"


def backup_path(path: str, aside: str | None = None) -> str:
    """Where :func:`config_file` keeps the previous text of `path`: beside it, or in directory `aside`."""
    return f"{aside}/{posixpath.basename(path)}{BACKUP}" if aside else path + BACKUP


@operation()
def config_file(
    path: str, content: str, mode: str = "0644", secrets: Sequence[str] = (), aside: str | None = None
) -> Generator[Any]:
    """Make `path` hold exactly `content`, root:root with `mode`, written atomically with the old file
    kept as ``PATH.podinfra-backup`` (none when there was no old file).

    The new text goes to a temporary file beside `path` (created 0600 before anything is written to
    it) and is renamed over it, so a node never holds a half-written config, even when the run is
    killed. With ``--diff`` the change is shown, `secrets` masked.

    + path: file on the node
    + content: the whole new text
    + mode: octal mode, e.g. "0600" for files holding credentials
    + secrets: strings never shown in a diff
    + aside: a directory on the same file system for the temporary file and the backup, for a directory
      whose every file the program reads (CRI-O's crio.conf.d)

    **Example:**

    .. code:: python

        config_file(name="containerd config", path="/etc/containerd/config.toml", content=text)
    """
    quoted = QuoteString(path)
    if host.get_fact(Sha256File, path=path) == hashlib.sha256(content.encode()).hexdigest():
        info = host.get_fact(File, path=path)
        # pyinfra's File fact gives the mode as the octal digits read as a decimal int (0644 -> 644).
        if info and info["mode"] == int(mode) and (info["user"], info["group"]) == ("root", "root"):
            host.noop(f"{path} is up to date")
            return
        yield StringCommand("chown", "root:root", quoted, "&&", "chmod", mode, quoted)
        return
    if state.config.DIFF:
        current = host.get_fact(FileContents, path=path)
        host.log(f"Will {'modify' if current is not None else 'create'} {path}", logger.info)
        lines = generate_color_diff([f"{line}\n" for line in current or []], content.splitlines(keepends=True))
        for line in lines:
            logger.info("  %s", _masked(line, secrets))
    staged = f"{aside}/{posixpath.basename(path)}.podinfra-new" if aside else f"{path}.podinfra-new"
    new, backup = QuoteString(staged), QuoteString(backup_path(path, aside))
    yield StringCommand("mkdir", "-p", QuoteString(posixpath.dirname(path)), *((QuoteString(aside),) if aside else ()))
    yield StringCommand("rm", "-f", new, "&&", "(", "umask", "077", "&&", "touch", new, ")")
    yield FileUploadCommand(StringIO(content), staged)
    yield StringCommand(
        *("chown", "root:root", new, "&&", "chmod", mode, new, "&&"),
        *("if", "[", "-f", quoted, "];", "then", "cp", "-p", quoted, backup, ";", "else", "rm", "-f", backup, ";"),
        *("fi", "&&", "mv", "-f", new, quoted),
    )


def _masked(line: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        line = line.replace(secret, "***")
    return line


@operation()
def failed(reason: str) -> Generator[Any]:
    """Fail this host, and only it, with `reason` as one line; its later operations do not run.

    For what is found on one node (a config containerd would refuse, no runtime): bad inventory
    data stops the whole run before any host is touched instead.
    """
    yield FunctionCommand(_fail, (reason,), {})


def _fail(state: State, host: Host, reason: str) -> bool:
    logger.error(f"{host.print_prefix}{reason}")
    return False


@operation()
def pause_pinned(image: str, certs_dir: str) -> Generator[Any]:
    """Pull `image` into containerd's ``k8s.io`` namespace through the registry mirrors of `certs_dir`,
    and label it pinned, so that image GC keeps it (containerd 1.6.22/1.7.3 and later honour the label).

    **Example:**

    .. code:: python

        pause_pinned(name="pause pinned", image="registry.k8s.io/pause:3.10", certs_dir="/etc/containerd/certs.d")
    """
    name = cri_name(image)
    found = host.get_fact(ContainerdImages).get(name)
    if found and found.pinned:
        host.noop(f"{name} is present and pinned")
        return
    if found is None:
        yield make_formatted_string_command(
            "ctr -n k8s.io images pull --hosts-dir {0} {1} >/dev/null", QuoteString(certs_dir), QuoteString(name)
        )
    yield make_formatted_string_command(
        "ctr -n k8s.io images label {0} {1}", QuoteString(name), QuoteString(f"{ctr.PINNED_LABEL}=pinned")
    )


@operation()
def old_pause_released(image: str, policy: str = "unpin") -> Generator[Any]:
    """After an upgrade: every other pause image in containerd's ``k8s.io`` namespace that no container
    (no pod sandbox) uses any more is unpinned (`policy` "unpin") or removed ("remove"); "keep" leaves it.

    Sandboxes made before the upgrade keep their pause until their pods are recreated, so an old pause
    that a container still uses is left pinned and said so.
    """
    if policy == "keep":
        host.noop("old pause images are kept (old_pause: keep)")
        return
    old = ctr.old_pauses(host.get_fact(ContainerdImages), cri_name(image))
    used = host.get_fact(ContainerImages)
    for stored in old:
        quoted = QuoteString(stored.name)
        if stored.name in used:
            host.noop(f"{stored.name} is still the pause of running sandboxes: kept")
        elif policy == "remove":
            yield make_formatted_string_command("ctr -n k8s.io images rm {0} >/dev/null", quoted)
        elif stored.pinned:
            yield make_formatted_string_command(
                "ctr -n k8s.io images label {0} {1}", quoted, QuoteString(f"{ctr.PINNED_LABEL}=")
            )
    if not old:
        host.noop("no other pause image")


@operation()
def crio_pause_pulled(image: str, socket: str = crio.SOCKET) -> Generator[Any]:
    """CRI-O holds `image` (its pause), pulled through its CRI where it does not: through the node's
    registries.conf, certs.d and auth file, as a sandbox would pull it. CRI-O pins its own pause_image.
    """
    found = host.get_fact(CrioImage, image=image, socket=socket)
    if found is not None:
        host.noop(f"{image} is present (CRI-O {'pins' if found.pinned else 'does not pin'} it)")
        return
    yield FunctionCommand(_crio_pull, (image, socket), {})


def _crio_pull(state: State, host: Host, image: str, socket: str) -> bool:
    _, output = host.run_shell_command(StringCommand(cri_curl.pull_command(socket, image)), print_output=False)
    try:
        cri_curl.pulled(output.stdout_lines)
    except cri_curl.CRICallError as e:
        return _fail(state, host, f"CRI-O could not pull {image}: {e}")
    return True


@operation()
def crio_old_pause_released(image: str, policy: str = "unpin", socket: str = crio.SOCKET) -> Generator[Any]:
    """After an upgrade: the other pause images CRI-O holds. CRI-O pins only its running pause_image (and
    ``pinned_images``), so "unpin" is its own doing; "remove" removes each one that no pod sandbox was
    made from and that pinned_images does not pin (RemoveImage over the CRI socket); "keep" leaves them.
    Where CRI-O does not say which pause each sandbox was made from, nothing is removed.

    **Example:**

    .. code:: python

        crio_old_pause_released(name="old pause removed", image="registry.k8s.io/pause:3.10.1", policy="remove")
    """
    if policy == "keep":
        host.noop("old pause images are kept (old_pause: keep)")
        return
    stored: list[cri_curl.ImageStatus] | None = host.get_fact(CrioImages, socket=socket)
    if stored is None:
        host.noop("CRI-O did not list its images: old pause images left for the next run")
        return
    current = host.get_fact(CrioImage, image=image, socket=socket)
    old = _crio_old_pauses(stored, cri_name(image), current.id if current else None)
    if not old:
        host.noop("no other pause image")
        return
    if policy == "unpin":
        for name, i in old.items():
            host.noop(
                f"{name}: " + ("still pinned (CRI-O's pinned_images names it)" if i.pinned else "unpinned by CRI-O")
            )
        return
    sandboxes: list[str] | None = host.get_fact(CrioSandboxes, socket=socket)
    made_from = [host.get_fact(CrioSandboxImage, sandbox_id=sandbox, socket=socket) for sandbox in sandboxes or []]
    if sandboxes is None or None in made_from:
        host.noop("CRI-O did not say which pause each pod sandbox was made from: old pause images left")
        return
    used = {_cri_key(name) for name in made_from if name}
    for name, i in old.items():
        if i.pinned:
            host.noop(f"{name} is pinned by CRI-O's pinned_images: kept")
        elif used & {i.id, *i.repo_tags, *i.repo_digests}:
            host.noop(f"{name} is still the pause of pod sandboxes: kept")
        else:
            yield FunctionCommand(_crio_remove, (i.id, name, socket), {})


def _crio_old_pauses(
    stored: list[cri_curl.ImageStatus], current: str, current_id: str | None
) -> dict[str, cri_curl.ImageStatus]:
    """{name: image} of the pause images other than `current` (by name, digest or id). An image pulled by digest
    has no tag (CRI-O lists it under its digest alone), so both kinds of name are read."""
    old = {}
    for i in stored:
        names = [*i.repo_tags, *i.repo_digests]
        if i.id == current_id or current in names or not names:
            continue
        if any(ctr.repository(name).rsplit("/", 1)[-1] == "pause" for name in names):
            old[names[0]] = i
    return old


def _cri_key(name: str) -> str:
    """A sandbox's recorded pause as CRI-O names it in its store (``r/pause:3.10@sha256:x`` -> ``r/pause@sha256:x``)."""
    try:
        return cri_name(name)
    except ReferenceError:
        return name


def _crio_remove(state: State, host: Host, image_id: str, name: str, socket: str) -> bool:
    command = StringCommand(cri_curl.remove_image_command(socket, image_id))
    _, output = host.run_shell_command(command, print_output=False)
    try:
        cri_curl.reply(output.stdout_lines)
    except cri_curl.CRICallError as e:
        return _fail(state, host, f"CRI-O could not remove the old pause {name}: {e}")
    return True


# The data keys a TLS hint names, in place of the command line's flags.
SOURCE_KEYS = ("pause_source_ca", "pause_source_insecure")


@operation()
def image_mirrored(image: Reference, mirror: MirrorSettings, dest: RegistryClient) -> Generator[Any]:
    """Copy `image` into the local registry (`dest`) unless its tag already holds the source's digest.

    **Example:**

    .. code:: python

        image_mirrored(name="pause", image=parse("registry.k8s.io/pause:3.10"), mirror=settings, dest=client)
    """
    ca = str(mirror.source_ca) if mirror.source_ca else None
    source = registry_source(image, mirror.source, mirror.source_insecure, ca, flags=SOURCE_KEYS)
    repo = under(mirror.prefix, image.repository)
    try:
        wanted = source.manifest(image.reference).digest
    except PodinfraError as e:
        yield FunctionCommand(_fail, (str(e),), {})
        return
    try:
        held = dest.manifest_digest(repo, image.tag or wanted)
    except PodinfraError:
        # Not answering yet: local_registry, earlier in this run, makes it. The copy asks it again (and
        # fails this host with one line if it still does not answer).
        held = None
    if held == wanted:
        host.noop(f"{dest.host}/{repo}:{image.tag} already is {wanted}")
        return
    yield FunctionCommand(_copy, (source, image, dest, repo), {})


def _copy(state: State, host: Host, source: RegistrySource, image: Reference, dest: RegistryClient, repo: str) -> bool:
    summary = Summary()
    try:
        copy_image(source, image.reference, dest, repo, image.tag, summary)
    except PodinfraError as e:
        return _fail(state, host, str(e))
    uploaded, sent = plural(summary.blobs_uploaded, "blob"), plural(summary.bytes_sent, "byte")
    logger.info(f"{host.print_prefix}{image} -> {dest.host}/{repo}: {uploaded} uploaded, {sent} sent")
    return True


@operation()
def probe_image_pushed(image: Image, mirror: MirrorSettings, dest: RegistryClient) -> Generator[Any]:
    """Push check 8's probe image (built on the control host) into the local registry unless it holds it."""
    repo = under(mirror.prefix, probe_image.REPOSITORY)
    try:
        held = dest.manifest_digest(repo, probe_image.TAG)
    except PodinfraError:
        held = None  # as in image_mirrored: asked again when the push runs
    if held == image.manifest.digest:
        host.noop(f"{dest.host}/{repo}:{probe_image.TAG} already is {held}")
        return
    yield FunctionCommand(_push_probe, (image, dest, repo), {})


def _push_probe(state: State, host: Host, image: Image, dest: RegistryClient, repo: str) -> bool:
    try:
        probe_image.push(dest, repo, image)
    except PodinfraError as e:
        return _fail(state, host, str(e))
    return True
