"""prodserver-tui: a terminal console that runs and watches every PRODUCTION_PROCESSES entry."""

from __future__ import annotations

import tomllib
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _installed
from pathlib import Path


def version() -> str:
    """The installed distribution's; run from a checkout without installing (``python -m
    tui.cli``), the pyproject.toml beside the packages says it, marked as such."""
    try:
        return _installed("prodserver-tui")
    except PackageNotFoundError:
        pass
    try:
        pyproject = tomllib.loads(
            (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
        )
        return f"{pyproject['project']['version']} (a checkout, not installed)"
    except (OSError, ValueError, KeyError):  # tomllib's TOMLDecodeError is a ValueError
        return "unknown"
