"""Static checks of the container files (issue 14): no runtime is needed to catch a root user,
a missing health check, a shell-form CMD that would swallow SIGTERM, or a variable Pulse does
not read. `.ci/build-image` builds and runs the image where a runtime exists."""
from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
READERS = ("quart_app/config.py", "quart_app/__main__.py", "quart_app/server.py")
# Read by Python, pip or the image itself, not by Pulse.
PLATFORM = {"PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PIP_NO_CACHE_DIR",
            "PIP_DISABLE_PIP_VERSION_CHECK"}


def final_stage() -> list[str]:
    """The Dockerfile's last stage as logical lines (continuations joined, comments dropped)."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.strip().startswith("#")]
    last_from = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    return lines[last_from:]


def instruction(name: str) -> list[str]:
    return [line[len(name):].strip() for line in final_stage()
            if line.upper().startswith(name + " ")]


def variables_pulse_reads() -> set[str]:
    names = set()
    for path in READERS:
        names |= set(re.findall(r"[\"']([A-Z][A-Z0-9_]{2,})[\"']", (ROOT / path).read_text()))
    return names


def test_image_is_slim_and_runs_as_a_non_root_user():
    base = final_stage()[0].split()[1]
    assert base.startswith("python:3.11-slim"), base
    users = instruction("USER")
    assert users and users[-1] not in ("root", "0", "0:0"), users


def test_healthcheck_asks_healthz():
    checks = instruction("HEALTHCHECK")
    assert len(checks) == 1 and "/healthz" in checks[0]
    assert "CMD" in checks[0] and "NONE" not in checks[0].upper()


def test_cmd_is_exec_form_so_sigterm_reaches_pulse():
    cmd = instruction("CMD")[-1]
    argv = json.loads(cmd)  # exec form is a JSON array; a shell form would not parse
    assert argv[:2] == ["pulse", "serve"]
    stop = instruction("STOPSIGNAL")
    assert stop in ([], ["SIGTERM"])
    assert not instruction("ENTRYPOINT")  # nothing (a shell) in front of pulse


def test_image_installs_the_wheel_not_the_source_tree():
    text = (ROOT / "Dockerfile").read_text()
    assert "pip wheel" in text and "pulse-dashboard" in text
    assert not any(line.startswith("COPY quart_app") for line in final_stage())


def test_variables_set_by_the_image_and_compose_are_read_by_pulse():
    known = variables_pulse_reads() | PLATFORM
    image_env = set()
    for line in instruction("ENV"):
        image_env |= set(re.findall(r"([A-Z][A-Z0-9_]+)=", line))
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    compose_env = set(compose["services"]["pulse"]["environment"])
    assert image_env and compose_env
    assert not (image_env | compose_env) - known, (image_env | compose_env) - known
    documented = (ROOT / "docs" / "configuration.md").read_text()
    for name in (image_env | compose_env) - PLATFORM:
        assert f"`{name}`" in documented, f"{name} is not in docs/configuration.md"


def test_compose_brings_up_pulse_with_redis_and_postgresql():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert {"pulse", "redis", "postgres"} <= set(services)
    pulse = services["pulse"]
    env = pulse["environment"]
    assert env["DATABASE_URL"].startswith("postgresql://") and "@postgres:" in env["DATABASE_URL"]
    assert env["REDIS_URL"].startswith("redis://redis:")
    assert env["APP_ENV"] == "production"
    assert set(pulse["depends_on"]) == {"redis", "postgres"}
    for name in ("redis", "postgres"):
        assert "healthcheck" in services[name]
        assert pulse["depends_on"][name]["condition"] == "service_healthy"


def test_build_context_leaves_out_development_files():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "*" in ignored and "**/node_modules" in ignored
