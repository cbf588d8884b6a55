"""Render and edit container-runtime config text: pure functions, no I/O to hosts.

Each function takes the node's current file text (or None) and the settings, and returns the new
text; the deploy reads and writes the files. Formats are the runtimes' documented ones: containerd
``docs/cri/config.md``, ``docs/hosts.md`` and ``docs/PLUGINS.md``; CRI-O ``crio.conf(5)``;
``containers-registries.conf(5)``; kubeadm's ``/var/lib/kubelet/kubeadm-flags.env``.

containerd's main ``config.toml`` is edited in place (with tomlkit, so comments, order and every
other setting survive) instead of adding a drop-in under ``imports``: in containerd 1.x an imported
file replaces whole plugin tables rather than merging into them, so a drop-in carrying only the
sandbox image would wipe the node's runtimes, cgroup driver and CNI settings.

>>> text = edit_containerd_config(None, "1.6.20", "10.0.0.2:5000/pause:3.10")
>>> text.splitlines()[0]
'version = 2'
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import jinja2
import tomlkit
from tomlkit.items import Item, String, Table
from tomlkit.toml_document import TOMLDocument

from podinfra import versions
from podinfra.reference import ReferenceError, parse, split_registry

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
DEFAULT_CONFIG_PATH = "/etc/containerd/certs.d"

_V2_CRI = ("plugins", "io.containerd.grpc.v1.cri")
_V3_IMAGES = ("plugins", "io.containerd.cri.v1.images")
# 1.x keys that containerd 2.x ignores under the old plugin ID (it only keeps streaming settings there).
_STALE_V2_KEYS = (
    (*_V2_CRI, "sandbox_image"),
    (*_V2_CRI, "registry", "config_path"),
    (*_V2_CRI, "registry", "mirrors"),
)
# Plugin IDs without which the node has no CRI at all (``cri`` is the 1.x short form Docker's package uses).
_CRI_PLUGIN_IDS = ("cri", "io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime")
_CONTAINERD_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?(?:[~+-][0-9A-Za-z.~+-]*)?$")
_CONTAINERD_OUTPUT = re.compile(r"^containerd\s+\S+\s+v?(\d+\.\d+\.\d+)", re.MULTILINE)
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_KUBELET_ARGS = re.compile(r"^(?P<head>\s*(?:export\s+)?KUBELET_KUBEADM_ARGS=)(?P<value>.*?)(?P<tail>\s*)$")
_PAUSE_FLAG = "pod-infra-container-image"


class ConfigError(ValueError):
    """Settings or a node file podinfra will not write; the message names the fix."""


@dataclass(frozen=True)
class ContainerdShape:
    """Where a containerd line reads the sandbox image and the registry ``config_path``.

    >>> containerd_shape("2.1.4").sandbox_path[-2:]
    ('pinned_images', 'sandbox')
    """

    config_version: int
    sandbox_path: tuple[str, ...]
    config_path_path: tuple[str, ...]


def containerd_shape(containerd_version: str) -> ContainerdShape:
    """The config layout of a containerd release: ``containerd_shape("1.6.20~ds1").config_version == 2``.

    Config version 2 is containerd 1.x's; version 3 came with 2.0 (CRI split into
    ``io.containerd.cri.v1.images``/``.runtime``), version 4 with 2.3, which keeps the CRI keys where 3 had them.
    """
    match = _CONTAINERD_VERSION.match(containerd_version.strip())
    if not match:
        raise ConfigError(f"{containerd_version!r} is not a containerd version: write MAJOR.MINOR[.PATCH], e.g. 1.7.27")
    release = (int(match[1]), int(match[2]))
    if (1, 6) <= release < (2, 0):
        return ContainerdShape(2, (*_V2_CRI, "sandbox_image"), (*_V2_CRI, "registry", "config_path"))
    if (2, 0) <= release < (3, 0):
        version = 3 if release < (2, 3) else 4
        return ContainerdShape(
            version, (*_V3_IMAGES, "pinned_images", "sandbox"), (*_V3_IMAGES, "registry", "config_path")
        )
    raise ConfigError(f"containerd {containerd_version} is not supported: podinfra knows containerd 1.6 to 2.x")


def containerd_version_from_output(output: str) -> str:
    """The release in ``containerd --version`` output, without distribution suffixes.

    >>> containerd_version_from_output("containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+b1")
    '1.6.20'
    >>> containerd_version_from_output("containerd github.com/containerd/containerd/v2 v2.0.4 1a43cb6a")
    '2.0.4'
    """
    match = _CONTAINERD_OUTPUT.search(output)
    if not match:
        raise ConfigError(
            f"no version in `containerd --version` output {output.strip()[:200]!r}: is containerd installed?"
        )
    return match[1]


def crio_version_from_output(output: str) -> str | None:
    """The release in ``crio --version`` output (its ``Version:`` line), or None.

    >>> crio_version_from_output("crio version 1.31.1\\nVersion:        v1.31.1\\nGitCommit: 1b2c")
    '1.31.1'
    """
    for line in output.splitlines():
        if line.startswith("Version:"):
            return line.split(":", 1)[1].strip().lstrip("v") or None
    return None


def edit_containerd_config(
    existing: str | None, containerd_version: str, sandbox_image: str, config_path: str = DEFAULT_CONFIG_PATH
) -> str:
    """The node's ``config.toml`` with the sandbox image and registry ``config_path`` set, nothing else changed.

    None or blank renders a minimal file. Otherwise only the two keys are set (tables created as
    needed) and, in a version 3/4 file, the 1.x keys listed by :func:`stale_keys` are removed;
    a file already holding the values comes back unchanged.

    >>> edit_containerd_config('version = 3\\n', "2.0.0", "10.0.0.2:5000/pause:3.10").count("[plugins.")
    2
    """
    shape = containerd_shape(containerd_version)
    _check_image(sandbox_image)
    _check_config_path(config_path)
    if existing is None or not existing.strip():
        return _render(
            f"containerd/config-v{shape.config_version}.toml.j2", sandbox_image=sandbox_image, config_path=config_path
        )
    doc = _parse_toml(existing, "config.toml")
    file_version = _check_version(doc, shape, containerd_version)
    _check_cri_enabled(doc)
    _check_registry_compatible(doc, shape)
    if file_version >= 3:
        for path in _STALE_V2_KEYS:
            _remove(doc, path)
    style = _Style(
        header="  " if re.search(r"^[ \t]+\[", existing, re.MULTILINE) else "",
        key="  " if re.search(r"^[ \t]+[\w\"']", existing, re.MULTILINE) else "",
    )
    _set(doc, shape.sandbox_path, sandbox_image, style)
    _set(doc, shape.config_path_path, config_path, style)
    text = _keep_untouched_lines(existing, tomlkit.parse(existing).as_string(), doc.as_string())
    _verify(text, {shape.sandbox_path: sandbox_image, shape.config_path_path: config_path})
    return text


def stale_keys(existing: str, containerd_version: str) -> list[str]:
    """containerd 1.x keys in a version 3/4 file that containerd 2.x ignores (edit removes them; warn about them).

    >>> stale_keys('version = 3\\n[plugins."io.containerd.grpc.v1.cri"]\\nsandbox_image = "x"\\n', "2.0")
    ['plugins."io.containerd.grpc.v1.cri".sandbox_image']
    """
    shape = containerd_shape(containerd_version)
    if shape.config_version < 3 or not existing.strip():
        return []
    doc = _parse_toml(existing, "config.toml")
    if _file_version(doc) < 3:
        return []
    return [_dotted(path) for path in _STALE_V2_KEYS if _lookup(doc, path) is not None]


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
    host, prefix = _registry(upstream, "upstream")
    if prefix:
        raise ConfigError(f"upstream {upstream!r}: give the registry host[:port] only; hosts.toml is per registry")
    url = _mirror_url(mirror)
    if override_path is not None:
        if urlsplit(url).path:
            raise ConfigError(f"mirror {mirror!r} has a path: give scheme://host[:port] and the path as override_path")
        root = "/" + override_path.strip().strip("/")
        if root == "/" or _CONTROL.search(root) or " " in root or "?" in root or "#" in root:
            raise ConfigError(f"override_path {override_path!r}: give the mirror's API root path, e.g. /v2/mirror")
        url += root
    if ca_file is not None:
        _check_text(ca_file, "ca_file")
        if url.startswith("http://"):
            raise ConfigError(f"ca_file given for plain-HTTP mirror {mirror!r}: use an https:// mirror or drop ca_file")
    if authorization is not None:
        _check_text(authorization, "authorization")
    return _render(
        "containerd/hosts.toml.j2",
        upstream=host,
        url=url,
        ca_file=ca_file,
        authorization=authorization,
        override_path=override_path is not None,
    )


def crio_dropin(pause_image: str, also_pin: Sequence[str] = ()) -> str:
    """``/etc/crio/crio.conf.d/10-podinfra-pause.conf``: ``[crio.image]`` pause_image and pinned_images.

    A drop-in's ``pinned_images`` replaces the list from crio.conf and earlier drop-ins, so pass the
    node's own pins as ``also_pin`` to keep them.

    >>> print(crio_dropin("10.0.0.2:5000/pause:3.10").splitlines()[-2])
    pause_image = "10.0.0.2:5000/pause:3.10"
    """
    _check_image(pause_image)
    pinned = [pause_image, *(image for image in also_pin if image != pause_image)]
    for image in pinned:
        _check_text(image, "pinned image")
    return _render("crio/10-podinfra-pause.conf.j2", pause_image=pause_image, pinned=pinned)


def crio_registries_conf(upstream: str, mirror_location: str, insecure: bool = False) -> str:
    """``/etc/containers/registries.conf.d/10-podinfra-mirror.conf`` (registries.conf v2 format).

    Pulls of ``upstream`` go to ``mirror_location`` (``HOST[:PORT][/PATH]``, no scheme) only:
    it is both the mirror and the registry's ``location``, so no pull reaches the upstream. A
    private CA goes to ``/etc/containers/certs.d/HOST:PORT/ca.crt`` (containers-certs.d(5)).

    >>> 'location = "10.0.0.2:5000/mirror"' in crio_registries_conf("registry.k8s.io", "10.0.0.2:5000/mirror")
    True
    """
    _registry(upstream, "upstream")
    _registry(mirror_location, "mirror_location")
    return _render(
        "crio/10-podinfra-mirror.conf.j2",
        upstream=upstream.strip("/"),
        mirror=mirror_location.strip("/"),
        insecure=insecure,
    )


def kubelet_flags(existing: str | None, kubernetes_version: str, sandbox_image: str) -> str:
    """``kubeadm-flags.env`` with ``--pod-infra-container-image`` set (Kubernetes < 1.35) or removed (>= 1.35).

    Other flags keep their order; other lines are kept; both ``--flag=value`` and ``--flag value`` are recognised.

    >>> kubelet_flags('KUBELET_KUBEADM_ARGS="--v=2"\\n', "1.34", "10.0.0.2:5000/pause:3.10.1")
    'KUBELET_KUBEADM_ARGS="--v=2 --pod-infra-container-image=10.0.0.2:5000/pause:3.10.1"\\n'
    """
    _check_image(sandbox_image)
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
        value = match["value"]
        quote = value[0] if len(value) >= 2 and value[0] in "\"'" and value[-1] == value[0] else ""
        args = (value[1:-1] if quote else value).split()
        new_args = _with_pause_flag(args, wanted)
        if new_args != args:
            quote = quote or '"'
            lines[index] = f"{match['head']}{quote}{' '.join(new_args)}{quote}{match['tail']}{line[len(body) :]}"
    if not found:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.append(f'KUBELET_KUBEADM_ARGS="{" ".join(_with_pause_flag([], wanted))}"\n')
    return "".join(lines)


# --- containerd config.toml -------------------------------------------------------------------------------


def _parse_toml(text: str, what: str) -> TOMLDocument:
    try:
        return tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as error:
        raise ConfigError(f"{what} is not valid TOML ({error}): fix the file by hand first") from error


def _file_version(doc: TOMLDocument) -> int:
    # containerd reads a file without `version` as version 1 (docs/PLUGINS.md, "Version header").
    version = doc.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int):
        raise ConfigError(f"config.toml has version = {version!r}: it must be an integer such as 2 or 3")
    return int(version)


def _check_version(doc: TOMLDocument, shape: ContainerdShape, containerd_version: str) -> int:
    version = _file_version(doc)
    newest = shape.config_version
    # containerd 2.3 reads version 3 files as they are, and its CRI keys sit where version 3 put them.
    oldest = 3 if newest == 4 else newest
    if version > newest:
        raise ConfigError(
            f"config.toml has version = {version} but containerd {containerd_version} reads up to version {newest}: "
            f"regenerate it with this node's `containerd config default`, or upgrade containerd"
        )
    if version >= oldest:
        return version
    if newest == 2:
        raise ConfigError(
            f"config.toml has no `version = 2`, so containerd {containerd_version} reads it as deprecated version 1: "
            "add `version = 2` at the top and write plugin IDs in full "
            '(plugins.cri -> plugins."io.containerd.grpc.v1.cri"), see containerd docs/PLUGINS.md, "Version header"'
        )
    raise ConfigError(
        f"config.toml is version {version} but containerd {containerd_version} uses version {newest}, where the CRI "
        "settings moved to other plugin IDs: migrate it first with `containerd config migrate > /tmp/config.toml`, "
        "review it, then move it over /etc/containerd/config.toml (redirecting straight onto the live file empties "
        "it before containerd reads it)"
    )


def _check_cri_enabled(doc: TOMLDocument) -> None:
    disabled = doc.get("disabled_plugins", [])
    off = sorted({str(plugin) for plugin in disabled} & set(_CRI_PLUGIN_IDS)) if isinstance(disabled, list) else []
    if off:
        raise ConfigError(
            f"config.toml disables the CRI plugin (disabled_plugins lists {', '.join(off)}): the kubelet cannot use "
            "this containerd; remove them from disabled_plugins"
        )


def _check_registry_compatible(doc: TOMLDocument, shape: ContainerdShape) -> None:
    # containerd refuses to load the CRI plugin when config_path is set next to these (both 1.x and 2.x).
    registry = _lookup(doc, shape.config_path_path[:-1])
    if not isinstance(registry, MutableMapping):
        return
    where = _dotted(shape.config_path_path[:-1])
    mirrors = registry.get("mirrors")
    if isinstance(mirrors, MutableMapping) and len(mirrors) > 0:
        raise ConfigError(
            f"config.toml sets {where}.mirrors, which containerd rejects together with config_path: move each "
            f"mirror to a hosts.toml under the config_path directory (containerd docs/hosts.md), then delete it"
        )
    configs = registry.get("configs")
    if isinstance(configs, MutableMapping) and any(
        isinstance(entry, MutableMapping) and "tls" in entry for entry in configs.values()
    ):
        raise ConfigError(
            f"config.toml sets {where}.configs.*.tls, which containerd rejects together with config_path: move "
            "ca/client/skip_verify to the registry's hosts.toml (containerd docs/hosts.md), then delete them"
        )


def _lookup(doc: MutableMapping[str, Any], path: Sequence[str]) -> Any:
    node: Any = doc
    for key in path:
        if not isinstance(node, MutableMapping) or key not in node:
            return None
        node = node[key]
    return node


def _remove(doc: TOMLDocument, path: Sequence[str]) -> None:
    parent = _lookup(doc, path[:-1])
    if not isinstance(parent, MutableMapping) or path[-1] not in parent:
        return
    del parent[path[-1]]
    # Drop tables this emptied (e.g. a registry table that only held config_path), never the plugin's own.
    for depth in range(len(path) - 1, len(_V2_CRI), -1):
        table = _lookup(doc, path[:depth])
        if isinstance(table, MutableMapping) and len(table) == 0:
            holder = _lookup(doc, path[: depth - 1])
            if isinstance(holder, MutableMapping):
                del holder[path[depth - 1]]


@dataclass(frozen=True)
class _Style:
    """How the file indents: table headers (per nesting level) and keys (relative to their header)."""

    header: str
    key: str


def _set(doc: TOMLDocument, path: Sequence[str], value: str, style: _Style) -> None:
    parent = _ensure_table(doc, path[:-1], style)
    key = path[-1]
    current = parent.get(key)
    if isinstance(current, str) and str(current) == value:
        return
    # Keep the file's quoting style: containerd 2.x writes 'literal' strings, 1.x "basic" ones.
    literal = isinstance(current, String) and current.as_string().startswith("'") and "'" not in value
    item = tomlkit.string(value, literal=literal)
    if key in parent:
        parent[key] = item  # tomlkit keeps the old line's indentation and trailing comment
        return
    indent = _sibling_indent(parent)
    if indent is None:
        header = parent.trivia.indent.lstrip("\n") if isinstance(parent, Table) else ""
        indent = header + style.key
    parent[key] = item
    cast(Item, parent[key]).trivia.indent = indent


def _ensure_table(doc: TOMLDocument, path: Sequence[str], style: _Style) -> MutableMapping[str, Any]:
    node: MutableMapping[str, Any] = doc
    for depth, key in enumerate(path, start=1):
        if key not in node:
            siblings = [value for value in node.values() if isinstance(value, Table) and not value.is_super_table()]
            # Intermediate tables stay "super" tables (no header line of their own), as containerd's docs write them.
            node[key] = tomlkit.table(is_super_table=depth < len(path))
            created = node[key]
            if isinstance(created, Table) and not created.is_super_table():
                indent = siblings[-1].trivia.indent if siblings else style.header * (depth - 1)
                created.trivia.indent = indent.lstrip("\n")
        child = node[key]
        if not isinstance(child, MutableMapping):
            raise ConfigError(f"config.toml has {_dotted(path[:depth])} = {child!r} where containerd expects a table")
        node = child
    return node


def _sibling_indent(table: MutableMapping[str, Any]) -> str | None:
    indent = None
    for value in table.values():
        if isinstance(value, Item) and not isinstance(value, Table):
            indent = value.trivia.indent.lstrip("\n")
    return indent


def _keep_untouched_lines(original: str, roundtrip: str, edited: str) -> str:
    """``edited`` with every line it did not change taken from ``original`` byte for byte.

    tomlkit 0.13 re-indents some table headers on a plain parse and render (indented headers under
    two levels of implicit tables), and would do so again on every run; it never changes more than
    leading whitespace there, so lines are matched against tomlkit's own rendering of the original.
    """
    old, same, new = original.splitlines(keepends=True), roundtrip.splitlines(keepends=True), edited.splitlines(True)
    if len(old) != len(same) or any(a.strip() != b.strip() for a, b in zip(old, same, strict=True)):
        return edited
    eol = "\r\n" if "\r\n" in original else "\n"
    out: list[str] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, same, new, autojunk=False).get_opcodes():
        if tag == "equal":
            out += old[i1:i2]
            continue
        # Blank lines around added lines are tomlkit's guesses: keep one before and after each new table,
        # and the blank line that closed a removed block.
        added = [line.rstrip("\r\n") + eol for line in new[j1:j2]]
        while added and not added[0].strip():
            added.pop(0)
        while added and not added[-1].strip():
            added.pop()
        if out and not out[-1].endswith("\n"):
            out[-1] += eol
        for line in added:
            if line.lstrip().startswith("[") and out and out[-1].strip():
                out.append(eol)
            out.append(line)
        table_added = bool(added) and added[0].lstrip().startswith("[")
        blank_removed = i2 > i1 and not old[i2 - 1].strip()
        if (table_added or blank_removed) and out and out[-1].strip() and i2 < len(old) and old[i2].strip():
            out.append(eol)
    text = "".join(out)
    return text if tomllib.loads(text) == tomllib.loads(edited) else edited


def _verify(text: str, expected: dict[tuple[str, ...], str]) -> None:
    # A safety net for tomlkit edge cases: what containerd will parse must hold exactly what we set.
    parsed = tomllib.loads(text)
    for path, value in expected.items():
        if _lookup(parsed, path) != value:
            raise ConfigError(f"could not set {_dotted(path)} in this config.toml: set it to {value!r} by hand")


def _dotted(path: Sequence[str]) -> str:
    return ".".join(key if _BARE_KEY.match(key) else f'"{key}"' for key in path)


# --- shared -----------------------------------------------------------------------------------------------


def _check_image(image: str) -> None:
    try:
        parse(image)
    except ReferenceError as error:
        raise ConfigError(str(error)) from error


def _check_config_path(path: str) -> None:
    # containerd reads config_path as one directory (docs/cri/config.md).
    if not path.startswith("/") or ":" in path or _CONTROL.search(path):
        raise ConfigError(f"config_path {path!r}: give one absolute directory, e.g. {DEFAULT_CONFIG_PATH}")


def _check_text(value: str, what: str) -> None:
    if not value or value != value.strip() or _CONTROL.search(value):
        raise ConfigError(f"{what} {value!r} must be non-empty, on one line, without surrounding spaces")


def _registry(text: str, what: str) -> tuple[str, str]:
    try:
        return split_registry(text.strip("/"))
    except ReferenceError as error:
        raise ConfigError(f"{what}: {error}") from error


def _mirror_url(mirror: str) -> str:
    parts = urlsplit(mirror)
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.query or parts.fragment or "@" in mirror:
        raise ConfigError(f"mirror {mirror!r}: give an https:// or http:// URL, e.g. https://10.0.0.2:5000")
    _registry(parts.netloc, "mirror")
    path = parts.path.rstrip("/")
    if path and (" " in path or _CONTROL.search(path)):
        raise ConfigError(f"mirror {mirror!r}: the path must be plain, e.g. https://10.0.0.2:5000/mirror")
    return f"{parts.scheme}://{parts.netloc}{path}"


def _with_pause_flag(args: list[str], image: str | None) -> list[str]:
    """Drop every form of the flag and, when ``image`` is given, put ``--flag=image`` where the first one was."""
    out: list[str] = []
    placed = False
    index = 0
    while index < len(args):
        arg = args[index]
        name, equals, _ = arg.lstrip("-").partition("=")
        if arg.startswith("-") and name == _PAUSE_FLAG:
            if not equals and index + 1 < len(args) and not args[index + 1].startswith("-"):
                index += 1  # `--flag value`: the value is the next word
            if image is not None and not placed:
                out.append(f"--{_PAUSE_FLAG}={image}")
                placed = True
        else:
            out.append(arg)
        index += 1
    if image is not None and not placed:
        out.append(f"--{_PAUSE_FLAG}={image}")
    return out


def _toml_string(value: str) -> str:
    """A TOML basic string: ``_toml_string('a"b') == '"a\\\\"b"'``."""
    escapes = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
    out = []
    for char in value:
        if char in escapes:
            out.append(escapes[char])
        elif _CONTROL.match(char):
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _toml_list(values: Sequence[str]) -> str:
    return "[" + ", ".join(_toml_string(value) for value in values) + "]"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # TOML, not HTML: every string goes through the `toml` filter instead
    )
    filters = cast(dict[str, Callable[..., str]], env.filters)
    filters["toml"] = _toml_string
    filters["toml_list"] = _toml_list
    return env


def _render(template: str, **values: Any) -> str:
    return _environment().get_template(template).render(**values).rstrip("\n") + "\n"
