"""Run Pulse (and, for fault tests, a private Redis) as real child processes."""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
# A child server gets exactly the configuration its test names, nothing from the outer shell.
SERVICE_VARIABLES = {"REDIS_URL", "DATABASE_URL", "JWT_SECRET", "APP_ENV", "PORT"}


def child_env(env: dict[str, str]) -> dict[str, str]:
    """The environment of a child server: the outer shell's without its Pulse and service
    variables, then ``env``."""
    inherited = {k: v for k, v in os.environ.items()
                 if not k.startswith("PULSE_") and k not in SERVICE_VARIABLES}
    return {**inherited, **env}


@asynccontextmanager
async def pulse_process(port: int, env: dict[str, str], args: tuple[str, ...] = (),
                        log_path: Path | None = None):
    """``python -m quart_app serve --port PORT`` with ``env``; yields the Popen; stops it by PID."""
    full_env = child_env({"PYTHONUNBUFFERED": "1", **env})
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(
        [sys.executable, "-m", "quart_app", "serve", "--port", str(port), *args],
        cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        await wait_healthy(f"http://127.0.0.1:{port}", proc)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.get_running_loop().run_in_executor(None, proc.wait, 15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if log_path:
            log.close()


async def wait_healthy(base: str, proc: subprocess.Popen | None = None,
                       timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=1) as http:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"server exited early with {proc.returncode}")
            try:
                if (await http.get(f"{base}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError(f"{base} not ready after {timeout}s")


async def wait_exit(proc: subprocess.Popen, timeout: float) -> float:
    started = time.monotonic()
    await asyncio.get_running_loop().run_in_executor(None, proc.wait, timeout)
    return time.monotonic() - started


class PrivateRedis:
    """A redis-server of our own on ``port`` that a test may stop and start for real."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    async def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.write(b"PING\r\n")
                if (await reader.readline()).startswith(b"+PONG"):
                    writer.close()
                    return
            except OSError:
                pass
            await asyncio.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            await asyncio.get_running_loop().run_in_executor(None, self.proc.wait, 10)
        self.proc = None
