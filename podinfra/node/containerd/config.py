"""Edit a node's containerd ``config.toml``: the sandbox image and the registry ``config_path`` set at
the key paths of the file's own config version, nothing else changed. A pure function: text in,
text out.

The main file is edited in place (tomlkit keeps comments, order and every other setting) instead
of adding a drop-in under ``imports``: in containerd 1.x an imported file replaces whole plugin
tables rather than merging into them, so a drop-in carrying only the sandbox image would wipe the
node's runtimes, cgroup driver and CNI settings.

>>> edit(None, "1.6.20", "10.0.0.2:5000/pause:3.10").text.splitlines()[0]
'version = 2'
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import tomlkit
from tomlkit.items import Item, String, Table
from tomlkit.toml_document import TOMLDocument

from podinfra.errors import ConfigError
from podinfra.node.containerd import hazards
from podinfra.node.containerd.shape import Shape, file_shape, runtime_shape
from podinfra.node.runtime_files import check_image
from podinfra.render import CONTROL, render
from podinfra.tomlpath import CRI_V1, dotted, lookup

DEFAULT_CONFIG_PATH = "/etc/containerd/certs.d"
# In a version 3/4 file these 1.x keys are ignored by containerd 2.0-2.2 (it logs "Ignoring unknown key
# in TOML") and, from 2.3 on, copied at load over the images plugin's own settings: the 1.x `registry`
# table replaces the images plugin's registry, config_path included (plugins/cri/images configMigration).
STALE = ("sandbox_image", "registry")
# Plugin IDs without which the node has no CRI at all (``cri`` is the 1.x short form Docker's package uses).
_CRI_PLUGIN_IDS = ("cri", "io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime")


@dataclass(frozen=True)
class Edit:
    """The edited text, the 1.x keys it removed, and notes for the operator (one line each)."""

    text: str
    removed: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())


def edit(
    existing: str | None, containerd_version: str, sandbox_image: str, config_path: str = DEFAULT_CONFIG_PATH
) -> Edit:
    """The node's ``config.toml`` with the sandbox image and registry ``config_path`` set, nothing else changed.

    None or blank renders a minimal file of the runtime's own version. Otherwise the two keys are
    set at the key paths of the file's version (tables created as needed) and, in a version 3/4
    file, the 1.x keys containerd 2.x ignores or misreads are removed; a file already holding the
    values comes back unchanged.

    >>> edit('version = 3\\n', "2.0.0", "10.0.0.2:5000/pause:3.10").text.count("[plugins.")
    2
    """
    runtime = runtime_shape(containerd_version)
    check_image(sandbox_image)
    _check_config_path(config_path)
    hazard = hazards.sandbox_image(containerd_version, sandbox_image)
    if hazard:
        raise ConfigError(hazard)
    if existing is None or not existing.strip():
        text = render("containerd/config.toml.j2", shape=runtime, image=sandbox_image, config_path=config_path)
        return Edit(text)
    doc = _parse_toml(existing)
    unedited = doc.as_string()  # tomlkit's rendering before any change: the edit's diff is taken against it
    docker = hazards.docker_package_config(doc)
    if docker:
        raise ConfigError(docker)
    shape = file_shape(_check_version(doc, runtime, containerd_version))
    notes = []
    if shape.config_version == 2 and runtime.config_version >= 3:
        notes.append(
            f"config.toml is version 2, which containerd {containerd_version} migrates in memory at every start: "
            f"edited at its version 2 key paths; `containerd config migrate` shows it as version "
            f"{runtime.config_version}"
        )
    _check_cri_enabled(doc)
    notes += _check_registry(doc, shape, runtime)
    removed = _remove_stale(doc) if shape.config_version >= 3 else []
    if removed:
        notes.append(
            f"removed {', '.join(removed)}: containerd 2.0-2.2 ignore these 1.x keys and 2.3 copies them over "
            "the images plugin's sandbox and registry settings; registry credentials and headers belong in "
            "that registry's hosts.toml"
        )
    style = _Style(
        header="  " if re.search(r"^[ \t]+\[", existing, re.MULTILINE) else "",
        key="  " if re.search(r"^[ \t]+[\w\"']", existing, re.MULTILINE) else "",
    )
    searched = hazards.config_path_dirs(lookup(doc, shape.config_path_path), containerd_version)
    if len(searched) > 1:
        others = ", ".join(d for d in searched if d != config_path)
        notes.append(
            f"config_path listed {':'.join(searched)} (set, or containerd's own default for an empty one): set to "
            f"{config_path} alone, since containerd 2.1+ pulls for the CRI through its transfer service, which reads "
            f"config_path as one directory; a hosts.toml kept in {others} is no longer read: move it there"
        )
    _set(doc, shape.sandbox_path, sandbox_image, style)
    _set(doc, shape.config_path_path, config_path, style)
    text = _keep_untouched_lines(existing, unedited, doc.as_string())
    _verify(text, {shape.sandbox_path: sandbox_image, shape.config_path_path: config_path})
    return Edit(text, tuple(removed), tuple(notes))


def stale_keys(text: str) -> list[str]:
    """The 1.x keys a version 3/4 file should not hold (see STALE); [] for other files.

    >>> stale_keys('version = 3\\n[plugins."io.containerd.grpc.v1.cri"]\\nsandbox_image = "x"\\n')
    ['plugins."io.containerd.grpc.v1.cri".sandbox_image']
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return []
    version = doc.get("version", 1)
    if not isinstance(version, int) or version < 3:
        return []
    return _stale_in(doc)


def _stale_in(doc: MutableMapping[str, Any]) -> list[str]:
    found = []
    for key in STALE:
        value = lookup(doc, (*CRI_V1, key))
        if isinstance(value, MutableMapping) and len(value) > 0:
            found += [dotted((*CRI_V1, key, child)) for child in value]
        elif value is not None:
            found.append(dotted((*CRI_V1, key)))
    return found


def _remove_stale(doc: TOMLDocument) -> list[str]:
    found = _stale_in(doc)
    plugin = lookup(doc, CRI_V1)
    for key in STALE:  # the plugin's own table stays: it holds the streaming settings 2.x still reads
        if isinstance(plugin, MutableMapping) and key in plugin:
            del plugin[key]
    return found


def _parse_toml(text: str) -> TOMLDocument:
    try:
        return tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as error:
        raise ConfigError(f"config.toml is not valid TOML ({error}): fix the file by hand first") from error


def _file_version(doc: TOMLDocument) -> int:
    # containerd reads a file without `version` as version 1 (docs/PLUGINS.md, "Version header").
    version = doc.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int):
        raise ConfigError(f"config.toml has version = {version!r}: it must be an integer such as 2 or 3")
    return int(version)


def _check_version(doc: TOMLDocument, runtime: Shape, containerd_version: str) -> int:
    version, newest = _file_version(doc), runtime.config_version
    if version > newest:
        raise ConfigError(
            f"config.toml has version = {version} but containerd {containerd_version} reads up to version {newest}: "
            f"regenerate it with this node's `containerd config default`, or upgrade containerd"
        )
    if version >= 2:
        return version
    if newest == 2:
        raise ConfigError(
            f"config.toml has no `version = 2`, so containerd {containerd_version} reads it as deprecated version 1: "
            "add `version = 2` at the top and write plugin IDs in full "
            '(plugins.cri -> plugins."io.containerd.grpc.v1.cri"), see containerd docs/PLUGINS.md, "Version header"'
        )
    raise ConfigError(
        f"config.toml is version {version}, which containerd {containerd_version} no longer reads as podinfra "
        "would edit it: migrate it first with `containerd config migrate > /tmp/config.toml`, review it, then "
        "move it over /etc/containerd/config.toml (redirecting straight onto the live file empties it first)"
    )


def _check_cri_enabled(doc: TOMLDocument) -> None:
    disabled = doc.get("disabled_plugins", [])
    off = sorted({str(plugin) for plugin in disabled} & set(_CRI_PLUGIN_IDS)) if isinstance(disabled, list) else []
    if off:
        raise ConfigError(
            f"config.toml disables the CRI plugin (disabled_plugins lists {', '.join(off)}): the kubelet cannot use "
            "this containerd; remove them from disabled_plugins"
        )


def _check_registry(doc: TOMLDocument, shape: Shape, runtime: Shape) -> list[str]:
    """Refuse what containerd rejects next to config_path; note what it ignores."""
    registry = lookup(doc, shape.registry_path)
    if not isinstance(registry, MutableMapping):
        return []
    where = dotted(shape.registry_path)
    mirrors = registry.get("mirrors")
    if isinstance(mirrors, MutableMapping) and len(mirrors) > 0:
        raise ConfigError(
            f"config.toml sets {where}.mirrors, which containerd rejects together with config_path: move each "
            f"mirror to a hosts.toml under the config_path directory (containerd docs/hosts.md), then delete it"
        )
    configs = registry.get("configs")
    if not isinstance(configs, MutableMapping) or not any(
        isinstance(entry, MutableMapping) and "tls" in entry for entry in configs.values()
    ):
        return []
    if runtime.config_version == 2:
        raise ConfigError(
            f"config.toml sets {where}.configs.*.tls, which containerd 1.x rejects together with config_path: move "
            "ca/client/skip_verify to the registry's hosts.toml (containerd docs/hosts.md), then delete them"
        )
    return [
        f"config.toml sets {where}.configs.*.tls, a field containerd 2.x removed and ignores (it logs a warning): "
        "the registry's TLS settings belong in its hosts.toml (containerd docs/hosts.md)"
    ]


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
            raise ConfigError(f"config.toml has {dotted(path[:depth])} = {child!r} where containerd expects a table")
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
        if lookup(parsed, path) != value:
            raise ConfigError(f"could not set {dotted(path)} in this config.toml: set it to {value!r} by hand")


def _check_config_path(path: str) -> None:
    # containerd reads config_path as one directory (docs/cri/config.md).
    if not path.startswith("/") or ":" in path or CONTROL.search(path):
        raise ConfigError(f"config_path {path!r}: give one absolute directory, e.g. {DEFAULT_CONFIG_PATH}")
