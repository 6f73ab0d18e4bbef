"""The tree shows the architecture (docs/scaling.md): the engine (``quart_app/realtime``)
imports neither the edge nor the built-in app, and the edge does not import the app."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "quart_app"


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, as an absolute dotted name (relative imports resolved)."""
    here = ["quart_app", *path.relative_to(PACKAGE).with_suffix("").parts]
    package = here[:-1] if path.name != "__init__.py" else here[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _offenders(part: str, forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for path in sorted((PACKAGE / part).rglob("*.py")):
        for module in imported_modules(path):
            if any(module == f or module.startswith(f + ".") for f in forbidden):
                bad.append(f"{path.relative_to(PACKAGE.parent)} imports {module}")
    return bad


@pytest.mark.parametrize("part, forbidden", [
    ("realtime", ("quart_app.dashboard", "quart_app.edge", "quart_app.services")),
    ("edge", ("quart_app.dashboard", "quart_app.services")),
])
def test_layers_import_only_downwards(part, forbidden):
    assert _offenders(part, forbidden) == []


def test_the_check_resolves_relative_imports():
    """A check that can fail: relative imports resolve to the modules they name."""
    assert "quart_app.realtime.outbox" in imported_modules(PACKAGE / "realtime" / "hub.py")
    assert "quart_app.config" in imported_modules(PACKAGE / "realtime" / "engine.py")
