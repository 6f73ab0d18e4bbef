"""The data files the distribution ships: ``sql/`` and ``static/``, found through
:mod:`importlib.resources` wherever the package is installed.

The folders stay at the top of the repository (DESIGN §1 names them there); ``setup.cfg`` maps
them into the distribution as ``quart_app.sql`` and ``quart_app.static``, so a wheel, a container
or an editable checkout all read the same files and nothing looks next to the source tree.
A missing folder or file is an :class:`InstallationError` at start (issue 14: an install without
them once printed "applied: nothing" and served 404s).
"""
from __future__ import annotations

import importlib.metadata
import importlib.resources
from functools import lru_cache
from pathlib import Path

from .errors import PulseError

DISTRIBUTION = "pulse-dashboard"
DIALECTS = ("postgresql", "sqlite")


class InstallationError(PulseError):
    """The installed package lacks a file it ships; reinstall (``pip install .`` or ``-e .``)."""


def version() -> str:
    """The installed distribution's version (``pulse --version``, the OpenAPI document)."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise InstallationError(f"the {DISTRIBUTION} distribution is not installed; install "
                                "Pulse: `pip install .`, or `pip install -e .` in a checkout"
                                ) from None


@lru_cache(maxsize=None)
def _folder(name: str) -> Path:
    package = f"quart_app.{name}"
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError:
        raise InstallationError(
            f"{package} is not installed (the {name}/ folder of the distribution); reinstall "
            "Pulse: `pip install .`, or `pip install -e .` in a checkout") from None
    # Quart sends files by path, and the package is never imported from a zip archive.
    if not isinstance(root, Path) or not root.is_dir():
        raise InstallationError(f"{package} is not a folder on disk ({root}); install Pulse "
                                "unzipped (pip does)")
    return root


def sql_dir() -> Path:
    """``sql/``: schema files per dialect, queries by name."""
    return _folder("sql")


def static_dir() -> Path:
    """``static/``: the page and the browser client."""
    return _folder("static")


def schema_files(dialect: str) -> list[Path]:
    """The dialect's schema files in the order they apply; never empty (an error instead)."""
    files = sorted((sql_dir() / dialect).glob("*.sql"))
    if not files:
        raise InstallationError(f"no schema files in {sql_dir() / dialect}: the installed "
                                "package is incomplete")
    return files


def check() -> None:
    """Raise InstallationError unless the schema, the queries and the page are all there."""
    for dialect in DIALECTS:
        schema_files(dialect)
    if not any((sql_dir() / "queries").glob("*.sql")):
        raise InstallationError(f"no queries in {sql_dir() / 'queries'}: the installed "
                                "package is incomplete")
    if not (static_dir() / "index.html").is_file():
        raise InstallationError(f"no index.html in {static_dir()}: the installed package is "
                                "incomplete")
