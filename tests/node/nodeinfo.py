"""Pure readers of what a node shows: hosts.toml, kubelet flags, `ctr images ls`, curl headers.

No I/O here, so the unit tests can feed them text:

>>> kubelet_pause_flag('KUBELET_KUBEADM_ARGS="--v=2 --pod-infra-container-image=registry.k8s.io/pause:3.10"')
'registry.k8s.io/pause:3.10'
"""

from __future__ import annotations

import re
import shlex
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

_KUBELET_ARGS = re.compile(r"^\s*(?:export\s+)?KUBELET_KUBEADM_ARGS=(?P<value>.*)$", re.MULTILINE)
_PAUSE_FLAG = "--pod-infra-container-image"
# containerd's default capabilities for a host that does not list any (docs/hosts.md).
DEFAULT_CAPABILITIES = ("pull", "resolve", "push")


def lookup(doc: Any, path: Sequence[str]) -> Any:
    """``doc[path[0]][path[1]]...``, or None where a key is missing."""
    for key in path:
        if not isinstance(doc, dict) or key not in doc:
            return None
        doc = doc[key]
    return doc


def kubelet_pause_flag(text: str | None) -> str | None:
    """The value of ``--pod-infra-container-image`` in a kubeadm-flags.env, or None when absent.

    >>> kubelet_pause_flag("KUBELET_KUBEADM_ARGS='--pod-infra-container-image x:1 --v=2'")
    'x:1'
    >>> kubelet_pause_flag(None) is None
    True
    """
    for match in _KUBELET_ARGS.finditer(text or ""):
        args = shlex.split(match["value"])
        args = args[0].split() if len(args) == 1 else args  # the usual form is one quoted string
        for index, arg in enumerate(args):
            if arg.startswith(f"{_PAUSE_FLAG}="):
                return arg.split("=", 1)[1]
            if arg == _PAUSE_FLAG and index + 1 < len(args):
                return args[index + 1]
    return None


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


def hosts_endpoints(text: str) -> list[Endpoint]:
    """The endpoints of a containerd ``hosts.toml``: ``[host."URL"]`` tables in file order, then ``server``.

    Raises ValueError when the text is not TOML.

    >>> [e.url for e in hosts_endpoints('server = "https://a:5000"\\n[host."https://b:5000"]\\n')]
    ['https://b:5000', 'https://a:5000']
    """
    doc = tomllib.loads(text)
    found = []
    hosts = doc.get("host", {})
    if isinstance(hosts, dict):
        for url, entry in hosts.items():
            entry = entry if isinstance(entry, dict) else {}
            found.append(
                Endpoint(
                    url,
                    tuple(entry.get("capabilities", DEFAULT_CAPABILITIES)),
                    _ca(entry.get("ca")),
                    bool(entry.get("override_path", False)),
                    is_server=False,
                )
            )
    if isinstance(doc.get("server"), str):
        found.append(
            Endpoint(
                doc["server"],
                tuple(doc.get("capabilities", DEFAULT_CAPABILITIES)),
                _ca(doc.get("ca")),
                bool(doc.get("override_path", False)),
                is_server=True,
            )
        )
    return found


def has_server(text: str) -> bool:
    """Whether hosts.toml sets ``server``; without it containerd falls back to the upstream itself."""
    return isinstance(tomllib.loads(text).get("server"), str)


@dataclass(frozen=True)
class StoredImage:
    name: str
    digest: str
    labels: dict[str, str]


def ctr_images(output: str) -> dict[str, StoredImage]:
    """`ctr images ls` rows by name: REF TYPE DIGEST SIZE(2 words) PLATFORMS LABELS.

    >>> row = "registry.k8s.io/pause:3.10 application/x sha256:ab 299.0 KiB linux/amd64 a=b,c=d"
    >>> ctr_images("REF TYPE DIGEST SIZE PLATFORMS LABELS\\n" + row)["registry.k8s.io/pause:3.10"].labels
    {'a': 'b', 'c': 'd'}
    """
    images = {}
    for line in output.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 3:
            continue
        labels: dict[str, str] = {}
        if len(parts) >= 7 and parts[-1] != "-":
            for item in parts[-1].split(","):
                key, _, value = item.partition("=")
                labels[key] = value
        images[parts[0]] = StoredImage(parts[0], parts[2], labels)
    return images


def http_reply(headers: str) -> tuple[int, dict[str, str]]:
    """The last status code and its headers (lower-cased names) in curl ``-D -`` output.

    >>> http_reply("HTTP/1.1 401 X\\r\\n\\r\\nHTTP/1.1 200 OK\\r\\nDocker-Content-Digest: sha256:a\\r\\n\\r\\n")
    (200, {'docker-content-digest': 'sha256:a'})
    """
    status, fields = 0, {}
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


def crio_registry(texts: Sequence[str], registry: str) -> dict[str, Any] | None:
    """The effective ``[[registry]]`` entry for `registry` across registries.conf and its drop-ins (in
    the order given, later files win by prefix), per containers-registries.conf(5). Untested on a node."""
    found = None
    for text in texts:
        for entry in tomllib.loads(text).get("registry", []):
            if isinstance(entry, dict) and (entry.get("prefix") or entry.get("location")) == registry:
                found = entry
    return found
