"""CRI-O's files and what CRI-O says about itself: pure functions, no I/O.

Formats are CRI-O 1.36's and containers' documented ones: ``crio.conf(5)`` (``/etc/crio/crio.conf``, then
every regular file under ``/etc/crio/crio.conf.d`` in walk order, each decoded over the previous: a key
in a later file wins), ``containers-registries.conf(5)``, ``containers-auth.json(5)`` and
``containers-certs.d(5)``.

>>> version_from_output("crio version 1.36.3\\n   GitCommit:  b24632ab")
'1.36.3'
"""

from __future__ import annotations

import base64
import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from podinfra.errors import ConfigError
from podinfra.images.reference import ReferenceError, parse
from podinfra.node.runtime_files import check_text, registry_parts
from podinfra.render import render

CONFIG = "/etc/crio/crio.conf"
DROPIN_DIR = "/etc/crio/crio.conf.d"
# Late in the walk: a distribution's or an operator's drop-in sorting earlier does not override it.
DROPIN = f"{DROPIN_DIR}/90-podinfra.conf"
# CRI-O parses every file in crio.conf.d, whatever its name: a backup or half-written file kept there would
# be read as a drop-in. podinfra keeps them beside it, in /etc/crio (same file system: rename stays atomic).
ASIDE = "/etc/crio"
AUTH_FILE = "/etc/crio/podinfra-auth.json"
REGISTRIES_CONF = "/etc/containers/registries.conf"
REGISTRIES_DIR = "/etc/containers/registries.conf.d"
REGISTRIES_DROPIN = f"{REGISTRIES_DIR}/90-podinfra.conf"
CERTS_DIR = "/etc/containers/certs.d"
SOCKET = "/var/run/crio/crio.sock"
# The keys podinfra's drop-in sets, under [crio.image]; a later file setting one of them overrides podinfra.
KEYS = ("pause_image", "global_auth_file")

_VERSION_LINE = re.compile(r"^(?:crio version\s+|Version:\s+)v?(\d+\.\d+\.\d+\S*)")


def version_from_output(output: str) -> str | None:
    """The release in ``crio --version`` (1.36: first line ``crio version 1.36.3``) or ``crio version``
    (a ``Version:`` line) output, or None.

    >>> version_from_output("Version:        v1.31.1\\nGitCommit: 1b2c")
    '1.31.1'
    """
    for line in output.splitlines():
        found = _VERSION_LINE.match(line.strip())
        if found:
            return found[1]
    return None


def ca_path(registry: str) -> str:
    """Where CRI-O (containers-certs.d(5)) looks for `registry`'s CA: the directory is HOST:PORT exactly
    as the image reference names it."""
    return f"{CERTS_DIR}/{registry}/ca.crt"


def dropin(pause_image: str, auth_file: str | None) -> str:
    """podinfra's ``crio.conf.d`` drop-in: ``[crio.image]`` pause_image and, with pull credentials,
    global_auth_file (see docs/crio.md for why the global file rather than pause_image_auth_file).

    >>> print(dropin("registry.k8s.io/pause:3.10", None).splitlines()[-1])
    pause_image = "registry.k8s.io/pause:3.10"
    """
    try:
        parse(pause_image)
    except ReferenceError as error:
        raise ConfigError(str(error)) from error
    if auth_file is not None:
        check_text(auth_file, "auth_file")
    return render("crio/90-podinfra.conf.j2", pause_image=pause_image, auth_file=auth_file)


def registries_conf(upstreams: Sequence[str], location: str) -> str:
    """podinfra's ``registries.conf.d`` drop-in: each of `upstreams` rewritten to `location`
    (``HOST[:PORT][/PATH]``, no scheme), which is then the only place its images are pulled from.

    >>> 'location = "10.0.0.2:5000/mirror"' in registries_conf(["registry.k8s.io"], "10.0.0.2:5000/mirror")
    True
    """
    for upstream in upstreams:
        registry_parts(upstream, "upstream")
    registry_parts(location, "location")
    return render(
        "crio/90-podinfra-registries.conf.j2",
        upstreams=[u.strip("/") for u in upstreams],
        location=location.strip("/"),
    )


def auth_json(registry: str, user: str, password: str) -> str:
    """A containers-auth.json(5) file with the pull credential for `registry` (HOST:PORT, the key c/image
    looks up for the physical reference).

    >>> json.loads(auth_json("10.0.0.2:5000", "pull", "pw"))["auths"]["10.0.0.2:5000"]["auth"]
    'cHVsbDpwdw=='
    """
    registry_parts(registry, "registry")
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return json.dumps({"auths": {registry: {"auth": token}}}, indent=2) + "\n"


# Section marks as the node suite's snapshot has them ("=== NAME"), so that one probe serves a fact and the suite.
_MARK = "=== crio file "
REGISTRIES_MARK = "=== registries file "
# registries.conf, then the drop-ins containers/image reads: *.conf only, in name order (bytewise).
REGISTRIES_PROBE = (
    f"for f in {REGISTRIES_CONF} $(LC_ALL=C ls -d {REGISTRIES_DIR}/*.conf 2>/dev/null); do "
    f"""[ -f "$f" ] && printf '{REGISTRIES_MARK}%s\\n' "$f" && cat -- "$f" && echo; done; true"""
)
# crio.conf, then every regular file under crio.conf.d (CRI-O reads them all, whatever their names).
FILES_PROBE = (
    f"find {CONFIG} {DROPIN_DIR} -type f -exec sh -c "
    f"""'for f; do printf "{_MARK}%s\\n" "$f"; cat -- "$f"; echo; done' sh {{}} + 2>/dev/null || true"""
)


def files_from_output(output: str) -> list[tuple[str, str]]:
    """(path, text) of each file in `FILES_PROBE` output, in the order CRI-O reads them."""
    return in_read_order(marked(output, _MARK))


def registries_from_output(output: str) -> list[tuple[str, str]]:
    """(path, text) of each file in `REGISTRIES_PROBE` output: registries.conf, then its drop-ins in the
    order containers/image reads them (the probe lists them so)."""
    return list(marked(output, REGISTRIES_MARK).items())


def marked(output: str, mark: str) -> dict[str, str]:
    """`output` cut into sections, each begun by a line ``MARK NAME``: name -> its text (empty where the
    section has no line). The node suite's snapshot is cut the same way."""
    texts: dict[str, list[str]] = {}
    current = None
    for line in output.splitlines():
        if line.startswith(mark):
            current = line[len(mark) :]
            texts[current] = []
        elif current is not None:
            texts[current].append(line)
    return {path: "\n".join(lines) + ("\n" if lines else "") for path, lines in texts.items()}


def in_read_order(texts: dict[str, str]) -> list[tuple[str, str]]:
    """(path, text) of crio.conf and its drop-ins, in the order CRI-O reads them."""
    ordered = walk_order([path for path in texts if path != CONFIG])
    return [(path, texts[path]) for path in ([CONFIG] if CONFIG in texts else []) + ordered]


def walk_order(paths: Sequence[str]) -> list[str]:
    """`paths` in the order CRI-O reads drop-ins (Go's filepath.Walk: names sorted bytewise in each directory,
    a directory's files before its next sibling).

    >>> walk_order(["/d/a-c", "/d/a/b", "/d/10.conf"])
    ['/d/10.conf', '/d/a/b', '/d/a-c']
    """
    return sorted(paths, key=lambda path: [part.encode() for part in path.split("/")])


@dataclass(frozen=True)
class Setting:
    """A value of a ``[crio.image]`` key and the file that set it last (None: the built-in default)."""

    value: Any
    source: str | None


def image_settings(files: Sequence[tuple[str, str]]) -> tuple[dict[str, Setting], list[str]]:
    """The ``[crio.image]`` values of `KEYS` that CRI-O's files give, each with the file that set it last,
    and the files CRI-O cannot parse (it refuses to start on them). `files`: (path, text) in read order."""
    found: dict[str, Setting] = {}
    broken = []
    for path, text in files:
        try:
            image = tomllib.loads(text).get("crio", {}).get("image", {})
        except (tomllib.TOMLDecodeError, AttributeError) as error:
            broken.append(f"{path} is not TOML ({error}): CRI-O does not start")
            continue
        for key in KEYS:
            if isinstance(image, dict) and key in image:
                found[key] = Setting(image[key], path)
    return found, broken


def overridden(files: Sequence[tuple[str, str]], own: str = DROPIN) -> dict[str, list[str]]:
    """The files read after podinfra's drop-in `own` that set one of its keys: path -> those keys."""
    later = False
    found: dict[str, list[str]] = {}
    for path, text in files:
        if path == own:
            later = True
            continue
        if not later:
            continue
        try:
            image = tomllib.loads(text).get("crio", {}).get("image", {})
        except (tomllib.TOMLDecodeError, AttributeError):
            continue
        keys = [key for key in KEYS if isinstance(image, dict) and key in image]
        if keys:
            found[path] = keys
    return found


_TABLE = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")


def without_keys(text: str, keys: Sequence[str], owner: str = DROPIN) -> str:
    """`text` (a crio.conf drop-in) with `keys` of its ``[crio.image]`` table commented out, naming `owner`
    as where they are set now; every other line kept as it was.

    >>> without_keys('[crio.image]\\npause_image = "x"\\nfoo = 1\\n', ["pause_image"], "/p.conf")
    '[crio.image]\\n# pause_image = "x"  # podinfra: set in /p.conf\\nfoo = 1\\n'
    """
    table = ""
    out = []
    for line in text.splitlines(keepends=True):
        header = _TABLE.match(line)
        if header:
            table = header[1].replace(" ", "").replace('"', "")
        body = line.rstrip("\r\n")
        key = body.split("=", 1)[0].strip()
        if table == "crio.image" and "=" in body and key in keys:
            line = f"# {body.strip()}  # podinfra: set in {owner}{line[len(body) :]}"
        out.append(line)
    return "".join(out)


def running_config(text: str) -> dict[str, Any] | None:
    """``[crio.image]`` of ``crio status config`` output (the running daemon's config, TOML), or None
    when it is not that (CRI-O does not answer)."""
    try:
        image = tomllib.loads(text).get("crio", {}).get("image")
    except tomllib.TOMLDecodeError:
        return None
    return image if isinstance(image, dict) else None


def sandbox_pause(info: Mapping[str, Any]) -> tuple[str, int]:
    """(pause image, infra pid) of a sandbox from its verbose status ``info``: CRI-O without an infra
    container (``drop_infra_ctr``, a sandbox sharing no PID namespace) has only its spec, whose
    annotation ``io.kubernetes.cri-o.Image`` still names the pause image; pid 0 then.

    >>> sandbox_pause({"runtimeSpec": {"annotations": {"io.kubernetes.cri-o.Image": "r/pause:3.10"}}})
    ('r/pause:3.10', 0)
    """
    image = str(info.get("image") or "")
    if not image:
        spec = info.get("runtimeSpec")
        annotations = spec.get("annotations", {}) if isinstance(spec, dict) else {}
        image = str(annotations.get("io.kubernetes.cri-o.Image", "")) if isinstance(annotations, dict) else ""
    pid = info.get("pid", 0)
    return image, int(pid) if isinstance(pid, int) else 0
