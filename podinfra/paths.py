"""Where podinfra's own files are, installed or in a checkout."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def templates() -> Path:
    """The Jinja2 templates: ``podinfra/templates`` in an installed wheel (package data mapped from the
    repository's ``templates/``), the repository's ``templates/`` in a checkout or an editable install."""
    installed = PACKAGE / "templates"
    return installed if installed.is_dir() else PACKAGE.parent / "templates"
