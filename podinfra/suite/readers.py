"""Pure readers and verdicts of the node checks: text a node shows in, what is wrong out.

No I/O here, so the unit tests feed them text:

>>> store_key("10.0.0.2:5000/pause:3.10@sha256:ab")
'10.0.0.2:5000/pause@sha256:ab'
>>> pin_verdict("1.6.20", "pinned", False)[0]
'warn'
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from podinfra import versions
from podinfra.node.containerd import ctr

# containerd's default capabilities for a host that does not list any (docs/hosts.md).
DEFAULT_CAPABILITIES = ("pull", "resolve", "push")


@dataclass(frozen=True)
class Endpoint:
    """A registry host containerd may send a pull to, in the order it tries them."""

    url: str
    capabilities: tuple[str, ...]
    ca: tuple[str, ...]
    override_path: bool
    is_server: bool

    @property
    def api_root(self) -> str:
        """The URL the distribution API is under: the URL itself with override_path, else URL + /v2."""
        url = self.url.rstrip("/")
        return url if self.override_path else f"{url}/v2"

    @property
    def netloc(self) -> str:
        return urlsplit(self.url).netloc


def _ca(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    return ()


def _endpoint(url: str, entry: Mapping[str, Any], is_server: bool) -> Endpoint:
    return Endpoint(
        url,
        tuple(entry.get("capabilities", DEFAULT_CAPABILITIES)),
        _ca(entry.get("ca")),
        bool(entry.get("override_path", False)),
        is_server,
    )


def hosts_endpoints(text: str) -> list[Endpoint]:
    """The endpoints of a containerd ``hosts.toml``: ``[host."URL"]`` tables in file order, then ``server``.

    Raises ValueError when the text is not TOML.

    >>> [e.url for e in hosts_endpoints('server = "https://a:5000"\\n[host."https://b:5000"]\\n')]
    ['https://b:5000', 'https://a:5000']
    """
    doc = tomllib.loads(text)
    hosts = doc.get("host", {})
    found = (
        [_endpoint(url, e if isinstance(e, dict) else {}, False) for url, e in hosts.items()]
        if isinstance(hosts, dict)
        else []
    )
    if isinstance(doc.get("server"), str):
        found.append(_endpoint(doc["server"], doc, True))
    return found


def mirror_problems(
    path: str, upstream: str, text: str | None, registry: str, ca_digest: str | None, node_ca: Mapping[str, str | None]
) -> list[str]:
    """What is wrong with one registry's hosts.toml: pulls of `upstream` must go to `registry` only, each
    https host with a CA file on the node (`node_ca`: path -> its sha256, None when missing) that is the
    registry's CA (`ca_digest`; None: the system trust store, no CA needed).

    >>> mirror_problems("h.toml", "r.io", None, "10.0.0.2:5000", None, {})
    ['h.toml is missing: pulls of r.io go to r.io itself']
    """
    if text is None:
        return [f"{path} is missing: pulls of {upstream} go to {upstream} itself"]
    try:
        endpoints = hosts_endpoints(text)
    except tomllib.TOMLDecodeError as e:
        return [f"{path} is not TOML ({e})"]
    problems = []
    if not any(e.is_server for e in endpoints):
        problems.append(f"{path} has no `server`: containerd falls back to https://{upstream}")
    for endpoint in endpoints:
        if endpoint.netloc != registry:
            problems.append(f"{path}: {endpoint.url} is not the local registry {registry}")
        if ca_digest and endpoint.url.startswith("https://"):
            if not endpoint.ca:
                problems.append(f"{path}: {endpoint.url} has no `ca`")
            for ca in endpoint.ca:
                if node_ca.get(ca) is None:
                    problems.append(f"{path}: CA file {ca} is missing on the node")
                elif node_ca[ca] != ca_digest:
                    problems.append(f"{path}: CA file {ca} is not the registry's CA")
    if not any({"pull", "resolve"} <= set(e.capabilities) for e in endpoints):
        problems.append(f"{path}: no host may pull and resolve")
    return problems


def cas_named(texts: Sequence[str]) -> set[str]:
    """Every CA file the hosts.toml texts name (those that are TOML)."""
    found: set[str] = set()
    for text in texts:
        try:
            found.update(ca for e in hosts_endpoints(text) for ca in e.ca)
        except tomllib.TOMLDecodeError:
            continue
    return found


def pin_verdict(containerd_version: str, label: str | None, cri_pinned: bool) -> tuple[str, str]:
    """(status, phrase) for the pause image's pin on containerd. What the kubelet's image GC honours is the
    CRI's ``pinned``; a containerd too old to report it (before 1.6.22 and 1.7.3) can only carry the label.

    >>> pin_verdict("2.1.9", "pinned", True)
    ('pass', 'label io.cri-containerd.pinned=pinned, CRI pinned=true')
    """
    shape = f"label io.cri-containerd.pinned={label or '(none)'}, CRI pinned={str(cri_pinned).lower()}"
    if cri_pinned:
        return "pass", shape
    if versions.containerd_honours_pins(containerd_version) or label != "pinned":
        return "fail", shape
    return "warn", (
        f"{shape}: containerd {containerd_version} keeps the label but honours pins only from 1.6.22 and 1.7.3, "
        "so only running sandboxes keep pause from the kubelet's image GC (which has left pinning to the CRI "
        "since Kubernetes 1.29); a node with no pods may lose it and pull it again from the local registry"
    )


def store_key(name: str) -> str:
    """The name an image store files `name` under: a reference with a digest drops its tag."""
    return f"{ctr.repository(name)}@{name.split('@', 1)[1]}" if "@" in name else name


def sandboxes_on_other_pause(sandboxes: Sequence[tuple[str, str]], *expected: str) -> list[str]:
    """``NAMESPACE/NAME: IMAGE`` of the (sandbox, image) pairs whose image is none of `expected`.

    >>> sandboxes_on_other_pause([("kube-system/a", "registry.k8s.io/pause:3.9")], "registry.k8s.io/pause:3.10")
    ['kube-system/a: registry.k8s.io/pause:3.9']
    """
    return [f"{name}: {image}" for name, image in sandboxes if image not in expected]


def http_reply(headers: str) -> tuple[int, dict[str, str]]:
    """The last status code and its headers (lower-cased names) in curl ``-D -`` output.

    >>> http_reply("HTTP/1.1 401 X\\r\\n\\r\\nHTTP/1.1 200 OK\\r\\nDocker-Content-Digest: sha256:a\\r\\n\\r\\n")
    (200, {'docker-content-digest': 'sha256:a'})
    """
    status, fields = 0, dict[str, str]()
    for line in headers.splitlines():
        line = line.strip()
        if line.startswith("HTTP/"):
            parts = line.split()
            status, fields = (int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0), {}
        elif ":" in line:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
    return status, fields


def curl_config(user: str, password: str) -> bytes:
    """A curl ``-K -`` config carrying the credentials on stdin, so no command line ever holds them."""
    quoted = password.replace("\\", "\\\\").replace('"', '\\"')
    return f'user = "{user}:{quoted}"\n'.encode()


SIGCHLD_BIT = 1 << (17 - 1)  # SIGCHLD is signal 17 on Linux; /proc's masks count from signal 1 at bit 0


def init_reaps(look: str) -> bool:
    r"""Whether PID 1, as ``cat /proc/1/comm; grep ^Sig /proc/1/status`` shows it, is past runc's init and
    handles SIGCHLD (caught, as pause does; ignored, which makes the kernel reap; or blocked, for a
    sigwait loop), so that an orphan exiting now is reaped.

    >>> init_reaps("pause\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\nSigCgt:\t0000000000014002\n")
    True
    >>> init_reaps("pause\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\nSigCgt:\t0000000000000000\n")
    False
    >>> init_reaps("runc:[2:INIT]\nSigCgt:\t0000000000014002\n")
    False
    """
    lines = look.splitlines()
    if not lines or lines[0].startswith("runc:"):
        return False
    masks = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name in ("SigBlk", "SigIgn", "SigCgt"):
            masks |= int(value.strip() or "0", 16)
    return bool(masks & SIGCHLD_BIT)
