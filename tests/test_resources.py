"""resources.py: sql/ and static/ come from the installed package, and a missing one is an
error at start, never "applied: nothing" or a 404 page (issue 14)."""
from __future__ import annotations

import importlib.resources

import pytest

from quart_app import __main__ as cli, resources
from quart_app.resources import InstallationError


def test_folders_are_the_installed_packages():
    assert resources.sql_dir() == importlib.resources.files("quart_app.sql")
    assert resources.static_dir() == importlib.resources.files("quart_app.static")
    resources.check()
    for dialect in resources.DIALECTS:
        assert [p.name for p in resources.schema_files(dialect)][0] == "001_core.sql"


@pytest.fixture
def empty_install(tmp_path, monkeypatch):
    """The package seen through an install that lacks its data files."""
    (tmp_path / "sql").mkdir()
    (tmp_path / "static").mkdir()
    monkeypatch.setattr(resources, "_folder", lambda name: tmp_path / name)


def test_missing_schema_is_an_error_not_nothing_to_apply(empty_install, tmp_path):
    with pytest.raises(InstallationError, match="no schema files"):
        resources.schema_files("sqlite")
    with pytest.raises(InstallationError):
        resources.check()


@pytest.mark.parametrize("command", ["migrate", "serve", "prune"])
def test_cli_refuses_an_incomplete_install(empty_install, command, monkeypatch, capsys):
    monkeypatch.delenv("APP_ENV", raising=False)
    assert cli.main([command]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pulse: installation error: ") and "no schema files" in err


def test_a_package_that_is_not_installed_is_named(monkeypatch):
    resources._folder.cache_clear()
    real = importlib.resources.files

    def files(package):
        if package == "quart_app.sql":
            raise ModuleNotFoundError(package)
        return real(package)

    monkeypatch.setattr(importlib.resources, "files", files)
    try:
        with pytest.raises(InstallationError, match="quart_app.sql is not installed"):
            resources.sql_dir()
    finally:
        resources._folder.cache_clear()


def test_version_is_the_distribution_version(capsys):
    import importlib.metadata

    with pytest.raises(SystemExit) as stop:
        cli.main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out == f"pulse {importlib.metadata.version('pulse-dashboard')}\n"


def test_help_names_the_program_pulse(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert capsys.readouterr().out.startswith("usage: pulse ")


def test_backlog_reaches_hypercorn(monkeypatch):
    from quart_app import server

    assert server._config("127.0.0.1", 0).backlog == 4096
    assert server._config("127.0.0.1", 0, backlog=128).backlog == 128
    seen = {}
    monkeypatch.setattr(server, "serve", lambda *a, **kw: seen.update(kw) or 0)
    monkeypatch.setenv("PULSE_BACKLOG", "512")
    assert cli.main(["serve"]) == 0 and seen["backlog"] == 512
    assert cli.main(["serve", "--backlog", "64"]) == 0 and seen["backlog"] == 64
