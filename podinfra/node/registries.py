"""registries.conf and its drop-ins as containers/image reads them (containers-registries.conf(5) and
containers-registries.conf.d(5)): where a pull of a reference goes, and which file decides it.

CRI-O's deploy uses it to find the tables that would override podinfra's drop-in (and comments them out),
check 3 to say where a pull goes. Pure functions, no I/O.

>>> ours = '[[registry]]\\nprefix = "registry.k8s.io"\\nlocation = "10.0.0.2:5000"\\n'
>>> later = '[[registry]]\\nprefix = "registry.k8s.io"\\nlocation = "registry.k8s.io"\\n'
>>> files = [("/etc/containers/registries.conf", ""), ("/d/90-podinfra.conf", ours), ("/d/99-x.conf", later)]
>>> overriding(files, ["registry.k8s.io/pause:3.10"], "10.0.0.2:5000", own="/d/90-podinfra.conf")["/d/99-x.conf"][0]
['registry.k8s.io']
"""

from __future__ import annotations

import posixpath
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from podinfra.errors import ConfigError


@dataclass(frozen=True)
class RegistriesConf:
    """registries.conf and its drop-ins merged as containers-registries.conf.d(5) says: ``[[registry]]``
    tables by prefix (a later file's table with the same prefix replaces the earlier one whole; within one
    file the first wins), ``[aliases]`` merged key by key (an empty value removes one), and
    ``unqualified-search-registries`` replaced by a later file that sets it. Each value keeps its file."""

    registries: dict[str, tuple[dict[str, Any], str]]  # prefix -> (the table, its file)
    aliases: dict[str, tuple[str, str]]  # short name -> (image, its file)
    search: tuple[list[str], str | None]  # unqualified-search-registries, its file
    problems: list[str]  # files containers/image refuses (then every pull fails)

    def entry_for(self, reference: str) -> tuple[str, dict[str, Any], str] | None:
        """(prefix, table, file) of the ``[[registry]]`` a pull of `reference` uses: the longest matching prefix."""
        found = [(p, t, f) for p, (t, f) in self.registries.items() if prefix_matches(reference, p)]
        return max(found, key=lambda item: len(item[0])) if found else None


def prefix_matches(reference: str, prefix: str) -> bool:
    """containers/image's prefix match: the whole reference, or up to a ``/``, ``:`` or ``@``; ``*.host`` matches
    subdomains of host."""
    if prefix.startswith("*."):
        host = reference.split("/", 1)[0]
        return host.endswith(prefix[1:])
    return reference == prefix or (reference.startswith(prefix) and reference[len(prefix)] in "/:@")


def merge(files: Sequence[tuple[str, str]]) -> RegistriesConf:
    """Merge `files` ((path, text): registries.conf first where there is one, then each
    ``registries.conf.d/*.conf`` in name order), each parsed on its own. Only registries.conf may be v1.

    >>> merged = merge([("a", '[aliases]\\nx = "r/x"\\n'), ("b", '[aliases]\\ny = "r/y"\\n')])
    >>> sorted(merged.aliases)
    ['x', 'y']
    """
    registries: dict[str, tuple[dict[str, Any], str]] = {}
    aliases: dict[str, tuple[str, str]] = {}
    search: tuple[list[str], str | None] = ([], None)
    problems = []
    for path, text in files:
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            problems.append(f"{path} is not TOML ({e}): every pull fails")
            continue
        if "registries" in doc and _dropin(path):
            problems.append(f"{path} is in v1 format ([registries.*]): a drop-in must be v2, every pull fails")
        own: dict[str, tuple[dict[str, Any], str]] = {}
        for table in doc.get("registry", []):
            if isinstance(table, dict):
                own.setdefault(_prefix(table), (table, path))  # within one file, the first table of a prefix wins
        registries.update(own)
        for name, image in (doc.get("aliases") or {}).items():
            if image:
                aliases[name] = (str(image), path)
            else:
                aliases.pop(name, None)
        if "unqualified-search-registries" in doc:
            search = (list(doc["unqualified-search-registries"]), path)
    return RegistriesConf(registries, aliases, search, problems)


def _dropin(path: str) -> bool:
    """Whether `path` is a drop-in, not registries.conf itself: only registries.conf may be v1."""
    return posixpath.basename(path) != "registries.conf" or posixpath.dirname(path).endswith(".d")


def _prefix(table: dict[str, Any]) -> str:
    return str(table.get("prefix") or table.get("location") or "")


def references(sandbox_image: str, mirrored: Sequence[str], local: str) -> dict[str, str]:
    """Mirrored registry -> the reference whose pulls must go to the local registry only: the pause image for
    its registry, the registry as a whole for the others.

    >>> references("registry.k8s.io/pause:3.10", ["registry.k8s.io", "docker.io"], "10.0.0.2:5000")
    {'registry.k8s.io': 'registry.k8s.io/pause:3.10', 'docker.io': 'docker.io'}
    """
    return {
        upstream: sandbox_image if sandbox_image.startswith(f"{upstream}/") else upstream
        for upstream in mirrored
        if upstream != local
    }


def registry_problems(merged: RegistriesConf, reference: str, registry: str) -> list[str]:
    """What lets a pull of `reference` go anywhere but `registry` (HOST:PORT), each naming the file to fix.

    A pull tries each mirror, then the table's ``location`` (the reference itself when there is no table);
    only a ``blocked`` location is never tried (containers-registries.conf(5))."""
    found = merged.entry_for(reference)
    if found is None:
        host = reference.split("/")[0]
        return [*merged.problems, f"no [[registry]] for {reference}: it is pulled from {host} itself"]
    problem = _table_problem(reference, registry, *found)
    return [*merged.problems, *([problem] if problem else [])]


def _mirrors(table: dict[str, Any]) -> list[str]:
    return [str(m.get("location", "")) for m in table.get("mirror", []) if isinstance(m, dict)]


def _table_problem(reference: str, registry: str, prefix: str, table: dict[str, Any], path: str) -> str | None:
    mirrors = _mirrors(table)
    location = str(table.get("location") or prefix)
    elsewhere = [m for m in mirrors if m.split("/")[0] != registry]
    if location.split("/")[0] != registry and not table.get("blocked"):
        elsewhere.append(location)
    if elsewhere:
        return f"{path}: [[registry]] prefix {prefix!r} lets pulls of {reference} go to {', '.join(elsewhere)}"
    if location.split("/")[0] != registry and not mirrors:
        return f"{path}: [[registry]] prefix {prefix!r} is blocked with no mirror: pulls of {reference} fail"
    return None


def physical(merged: RegistriesConf, reference: str) -> str:
    """Where the first pull attempt of `reference` goes: its first mirror, else its ``location``, the table's
    prefix replaced (containers-registries.conf(5) "rewrite")."""
    found = merged.entry_for(reference)
    if found is None:
        return reference
    prefix, table, _ = found
    mirrors = _mirrors(table)
    return (mirrors[0] if mirrors else str(table.get("location") or prefix)) + reference[len(prefix) :]


def with_file(files: Sequence[tuple[str, str]], path: str, text: str) -> list[tuple[str, str]]:
    """`files` with `path` holding `text`, in the order containers/image reads them: registries.conf (where
    there is one), then the drop-ins of `path`'s directory by name, bytewise."""
    texts = dict(files)
    texts[path] = text
    directory = posixpath.dirname(path)
    return sorted(texts.items(), key=lambda item: (posixpath.dirname(item[0]) == directory, item[0].encode()))


def overriding(
    files: Sequence[tuple[str, str]], wanted: Sequence[str], registry: str, own: str
) -> dict[str, tuple[list[str], str]]:
    """The files whose ``[[registry]]`` tables, rather than podinfra's drop-in `own`, decide a pull of one of
    `wanted` and let it go elsewhere than `registry`: path -> (the prefixes of those tables, the file's text
    with them commented out by :func:`without_tables`). With those texts each pull is left to `own`, or to
    a table that also sends it to `registry`. ConfigError names a table that cannot be commented out (not
    written as a ``[[registry]]`` header and its lines).
    """
    found: dict[str, tuple[list[str], str]] = {}
    texts = dict(files)
    while True:
        merged = merge(list(texts.items()))
        wrong = [
            (deciding[2], deciding[0])
            for reference in wanted
            if (deciding := merged.entry_for(reference))
            and deciding[2] != own
            and _table_problem(reference, registry, *deciding)
        ]
        if not wrong:
            return found
        path, prefix = wrong[0]
        edited = without_tables(texts[path], [prefix], own)
        if edited == texts[path]:
            raise ConfigError(
                f"{path}: its [[registry]] of prefix {prefix!r} sends pulls past {registry}, and podinfra cannot "
                f"comment it out (not a [[registry]] header with its keys below): remove it, or send it to {registry}"
            )
        texts[path] = edited
        found[path] = ([*found.get(path, ([], ""))[0], prefix], edited)


_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\[\]]+?)\s*\]\]?\s*(#.*)?$")


def without_tables(text: str, prefixes: Sequence[str], owner: str) -> str:
    """`text` with each ``[[registry]]`` table of one of `prefixes` (its ``[[registry.mirror]]`` tables
    with it) commented out, naming `owner` as where that prefix is set now; every other line kept.

    >>> print(without_tables('[[registry]]\\nprefix = "r.io"\\n[[registry.mirror]]\\nlocation = "m"\\n'
    ...                      '[[registry]]\\nprefix = "q.io"\\n', ["r.io"], "/p.conf"), end="")
    # podinfra: pulls of r.io are set in /p.conf
    # [[registry]]
    # prefix = "r.io"
    # [[registry.mirror]]
    # location = "m"
    [[registry]]
    prefix = "q.io"
    """
    out: list[str] = []
    entry: list[str] = []  # the [[registry]] table being read, with its sub-tables

    def close() -> None:
        if not entry:
            return
        own = []  # the table's own keys: up to its first sub-table
        for line in entry[1:]:
            if _HEADER.match(line):
                break
            own.append(line)
        try:
            prefix = _prefix(tomllib.loads("".join(own)))
        except tomllib.TOMLDecodeError:
            prefix = ""
        if prefix in prefixes:
            out.append(f"# podinfra: pulls of {prefix} are set in {owner}\n")
            out.extend(f"# {line}" if line.strip() else line for line in entry)
        else:
            out.extend(entry)
        entry.clear()

    for line in text.splitlines(keepends=True):
        header = _HEADER.match(line)
        name = header[2].replace(" ", "").replace('"', "") if header else ""
        if header and header[1] == "[[" and name == "registry":
            close()
            entry.append(line)
        elif entry and (not header or name.startswith("registry.")):
            entry.append(line)
        else:
            close()
            out.append(line)
    close()
    return "".join(out)
