"""Render container-runtime files other than containerd's config.toml: pure functions, no I/O.

Formats are the runtimes' documented ones: containerd ``docs/hosts.md``; kubeadm's
``/var/lib/kubelet/kubeadm-flags.env``. containerd's config.toml is edited by
:mod:`podinfra.node.containerd.config`, CRI-O's files are made by :mod:`podinfra.node.crio`.

>>> kubelet_flags(None, "1.36", "registry.k8s.io/pause:3.10.2")
'KUBELET_KUBEADM_ARGS=""\\n'
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urlsplit

from podinfra import versions
from podinfra.errors import ConfigError
from podinfra.images.reference import ReferenceError, parse, split_registry
from podinfra.render import CONTROL, render

_KUBELET_ARGS = re.compile(r"^(?P<head>\s*(?:export\s+)?KUBELET_KUBEADM_ARGS=)(?P<value>.*?)(?P<tail>\s*)$")
_PAUSE_FLAG = "pod-infra-container-image"

__all__ = ["check_image", "check_text", "hosts_toml", "kubelet_flags", "registry_parts"]


def hosts_toml(
    upstream: str,
    mirror: str,
    ca_file: str | None,
    authorization: str | None = None,
    override_path: str | None = None,
) -> str:
    """``certs.d/UPSTREAM/hosts.toml`` sending every pull of ``upstream`` to ``mirror`` and nowhere else.

    ``override_path`` is the mirror's API root when it is not ``/v2`` (containerd docs/hosts.md,
    "override_path field"): for images mirrored under a prefix, pass ``"/v2/PREFIX"`` and the host
    becomes ``https://10.0.0.2:5000/v2/PREFIX``.

    >>> print(hosts_toml("registry.k8s.io", "https://10.0.0.2:5000", None).splitlines()[1])
    server = "https://10.0.0.2:5000"
    """
    host, prefix = registry_parts(upstream, "upstream")
    if prefix:
        raise ConfigError(f"upstream {upstream!r}: give the registry host[:port] only; hosts.toml is per registry")
    url = _mirror_url(mirror)
    if override_path is not None:
        if urlsplit(url).path:
            raise ConfigError(f"mirror {mirror!r} has a path: give scheme://host[:port] and the path as override_path")
        root = "/" + override_path.strip().strip("/")
        if root == "/" or CONTROL.search(root) or " " in root or "?" in root or "#" in root:
            raise ConfigError(f"override_path {override_path!r}: give the mirror's API root path, e.g. /v2/mirror")
        url += root
    if ca_file is not None:
        check_text(ca_file, "ca_file")
        if url.startswith("http://"):
            raise ConfigError(f"ca_file given for plain-HTTP mirror {mirror!r}: use an https:// mirror or drop ca_file")
    if authorization is not None:
        check_text(authorization, "authorization")
    return render(
        "containerd/hosts.toml.j2",
        upstream=host,
        url=url,
        ca_file=ca_file,
        authorization=authorization,
        override_path=override_path is not None,
    )


def kubelet_flags(existing: str | None, kubernetes_version: str, sandbox_image: str) -> str:
    """``kubeadm-flags.env`` with ``--pod-infra-container-image`` set (Kubernetes < 1.35) or removed (>= 1.35).

    Other flags keep their order; other lines are kept; both ``--flag=value`` and ``--flag value`` are recognised.

    >>> kubelet_flags('KUBELET_KUBEADM_ARGS="--v=2"\\n', "1.34", "10.0.0.2:5000/pause:3.10.1")
    'KUBELET_KUBEADM_ARGS="--v=2 --pod-infra-container-image=10.0.0.2:5000/pause:3.10.1"\\n'
    """
    check_image(sandbox_image)
    try:
        wanted = sandbox_image if versions.kubelet_takes_pause_flag(kubernetes_version) else None
    except versions.VersionError as error:
        raise ConfigError(str(error)) from error
    if existing is None:
        return f'KUBELET_KUBEADM_ARGS="{" ".join(_with_pause_flag([], wanted))}"\n'
    lines = existing.splitlines(keepends=True)
    found = False
    for index, line in enumerate(lines):
        body = line.rstrip("\r\n")
        match = _KUBELET_ARGS.match(body)
        if not match:
            continue
        found = True
        quote, args = _kubelet_args(match["value"])
        new_args = _with_pause_flag(args, wanted)
        if new_args != args:
            quote = quote or '"'
            lines[index] = f"{match['head']}{quote}{' '.join(new_args)}{quote}{match['tail']}{line[len(body) :]}"
    if not found:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.append(f'KUBELET_KUBEADM_ARGS="{" ".join(_with_pause_flag([], wanted))}"\n')
    return "".join(lines)


def kubelet_pause_flag(text: str | None) -> str | None:
    """The value of ``--pod-infra-container-image`` in a kubeadm-flags.env, or None when absent.

    >>> kubelet_pause_flag("KUBELET_KUBEADM_ARGS='--pod-infra-container-image x:1 --v=2'")
    'x:1'
    >>> kubelet_pause_flag(None) is None
    True
    """
    for line in (text or "").splitlines():
        match = _KUBELET_ARGS.match(line)
        args = _kubelet_args(match["value"])[1] if match else []
        for _, _, value in _pause_flags(args):
            return value
    return None


# Where a kubeadm node's kubelet gets its flags: kubeadm's file, then the packages' KUBELET_EXTRA_ARGS file
# (the unit's command line has $KUBELET_KUBEADM_ARGS before $KUBELET_EXTRA_ARGS: a later flag wins).
KUBELET_EXTRA_ARGS_FILES = ("/etc/default/kubelet", "/etc/sysconfig/kubelet")
# KubeletConfiguration files, the one kubeadm patches over the other first (NodeLocalCRISocket, 1.34+).
KUBELET_CONFIG_FILES = ("/var/lib/kubelet/instance-config.yaml", "/var/lib/kubelet/config.yaml")
_ARGS_LINE = re.compile(r"^\s*(?:export\s+)?KUBELET_[A-Z_]*ARGS=(?P<value>.*?)\s*$")
_ENDPOINT_KEY = re.compile(r"^containerRuntimeEndpoint:\s*(?P<value>.*?)\s*(?:#.*)?$")


def kubelet_runtime_endpoint(files: list[tuple[str, str]]) -> tuple[str, str] | None:
    """(the kubelet's container runtime endpoint, the file it is set in), or None where none sets it.

    `files`: (path, text) of the flags files (``--container-runtime-endpoint`` in a ``KUBELET_*ARGS``
    line; the last use wins) in command-line order, then the KubeletConfiguration files
    (``containerRuntimeEndpoint``; instance-config.yaml before config.yaml). A flag overrides the config file.

    >>> kubelet_runtime_endpoint([("/f.env", 'KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///c.sock"')])
    ('unix:///c.sock', '/f.env')
    """
    flag: tuple[str, str] | None = None
    for path, text in files:
        if path.endswith(".yaml"):
            continue
        for line in text.splitlines():
            match = _ARGS_LINE.match(line)
            args = _kubelet_args(match["value"])[1] if match else []
            for _, _, value in _pause_flags(args, "container-runtime-endpoint"):
                if value:
                    flag = (value, path)
    if flag:
        return flag
    order = {path: index for index, path in enumerate(KUBELET_CONFIG_FILES)}
    for path, text in sorted(files, key=lambda file: order.get(file[0], len(order))):
        if not path.endswith(".yaml"):
            continue
        for line in text.splitlines():
            match = _ENDPOINT_KEY.match(line)
            if match and match["value"].strip("'\""):
                return match["value"].strip("'\""), path
    return None


def _kubelet_args(value: str) -> tuple[str, list[str]]:
    """(its quote, the flags) of a KUBELET_KUBEADM_ARGS value, quoted or not."""
    quote = value[0] if len(value) >= 2 and value[0] in "\"'" and value[-1] == value[0] else ""
    return quote, (value[1:-1] if quote else value).split()


# --- shared -----------------------------------------------------------------------------------------------


def check_image(image: str) -> None:
    """Refuse an image reference that cannot be pulled as written (ConfigError naming the fix)."""
    try:
        parse(image)
    except ReferenceError as error:
        raise ConfigError(str(error)) from error


def check_text(value: str, what: str) -> None:
    if not value or value != value.strip() or CONTROL.search(value):
        raise ConfigError(f"{what} {value!r} must be non-empty, on one line, without surrounding spaces")


def registry_parts(text: str, what: str) -> tuple[str, str]:
    try:
        return split_registry(text.strip("/"))
    except ReferenceError as error:
        raise ConfigError(f"{what}: {error}") from error


def _mirror_url(mirror: str) -> str:
    parts = urlsplit(mirror)
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.query or parts.fragment or "@" in mirror:
        raise ConfigError(f"mirror {mirror!r}: give an https:// or http:// URL, e.g. https://10.0.0.2:5000")
    registry_parts(parts.netloc, "mirror")
    path = parts.path.rstrip("/")
    if path and (" " in path or CONTROL.search(path)):
        raise ConfigError(f"mirror {mirror!r}: the path must be plain, e.g. https://10.0.0.2:5000/mirror")
    return f"{parts.scheme}://{parts.netloc}{path}"


def _pause_flags(args: list[str], flag: str = _PAUSE_FLAG) -> Iterator[tuple[int, int, str | None]]:
    """Each use of `flag` in `args`: (its first word, the word after it, its value; None when it has none).
    ``-flag``, ``--flag=value`` and ``--flag value`` (the next word, unless that is a flag) are all one use."""
    index = 0
    while index < len(args):
        arg = args[index]
        name, equals, value = arg.lstrip("-").partition("=")
        if arg.startswith("-") and name == flag:
            if equals:
                yield index, index + 1, value
            elif index + 1 < len(args) and not args[index + 1].startswith("-"):
                yield index, index + 2, args[index + 1]
                index += 1
            else:
                yield index, index + 1, None
        index += 1


def _with_pause_flag(args: list[str], image: str | None) -> list[str]:
    """Drop every form of the flag and, when ``image`` is given, put ``--flag=image`` where the first one was."""
    uses = list(_pause_flags(args))
    dropped = {i for start, end, _ in uses for i in range(start, end)}
    first = uses[0][0] if uses else len(args)  # nothing before the first use is dropped
    kept = [arg for i, arg in enumerate(args) if i not in dropped]
    wanted = [f"--{_PAUSE_FLAG}={image}"] if image is not None else []
    return kept[:first] + wanted + kept[first:]
