"""Jinja2 rendering of the files podinfra writes (``templates/``), with TOML-safe filters: every string
value goes through ``toml`` (a basic string, escaped), so no value can break out of its key.

"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import jinja2

from podinfra.tomlpath import dotted

# The Jinja2 templates: the repository's templates/, which podinfra/templates links to (and a wheel carries).
TEMPLATES = Path(__file__).resolve().parent / "templates"
# Control characters: never part of a path or value written into a node's config.
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _toml_string(value: str) -> str:
    """A TOML basic string: ``_toml_string('a"b') == '"a\\\\"b"'``."""
    escapes = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
    out = []
    for char in value:
        if char in escapes:
            out.append(escapes[char])
        elif CONTROL.match(char):
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
    filters["dotted"] = dotted
    return env


def render(template: str, **values: Any) -> str:
    """A template of ``templates/`` rendered with `values`; every string value goes through the ``toml`` filter."""
    return _environment().get_template(template).render(**values).rstrip("\n") + "\n"
