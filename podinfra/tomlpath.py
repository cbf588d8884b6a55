"""Key paths into parsed TOML documents, as containerd's docs write them.

>>> lookup({"plugins": {"io.containerd.grpc.v1.cri": {"sandbox_image": "x"}}}, CRI_V1 + ("sandbox_image",))
'x'
>>> dotted(CRI_V1 + ("sandbox_image",))
'plugins."io.containerd.grpc.v1.cri".sandbox_image'
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

CRI_V1 = ("plugins", "io.containerd.grpc.v1.cri")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def lookup(doc: Any, path: Sequence[str]) -> Any:
    """``doc[path[0]][path[1]]...``, or None where a key is missing (tomllib dicts and tomlkit tables alike)."""
    for key in path:
        if not isinstance(doc, Mapping) or key not in doc:
            return None
        doc = doc[key]
    return doc


def dotted(path: Sequence[str]) -> str:
    """A key path as one TOML key: keys that are not bare are quoted."""
    return ".".join(key if _BARE_KEY.match(key) else f'"{key}"' for key in path)
