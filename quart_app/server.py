"""Run the app on Hypercorn, one or more worker processes sharing one listening socket.

SIGTERM/SIGINT (docs/operations.md, "SIGTERM"): the worker stops accepting, closes every
WebSocket with 1012 and ends every SSE stream (so clients reconnect elsewhere and recover from
history), then Hypercorn stops the listener and the app within ``PULSE_SHUTDOWN_GRACE_SECONDS``
plus its own graceful timeout. Hypercorn's own SIGTERM handling would first wait for those
long-lived connections to end by themselves, which is why ``serve`` owns the shutdown trigger.
A worker that stopped cleanly then exits without the interpreter's teardown (:func:`leave`).
"""
from __future__ import annotations

import asyncio
import atexit
import contextlib
import gc
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import threading

log = logging.getLogger("pulse.server")


def _config(host: str, port: int, backlog: int = 4096):
    from hypercorn.config import Config

    from .logs import RedactingLogger

    config = Config()
    config.bind = [f"{host}:{port}"]
    # The listen queue: a reconnect storm after a deploy arrives all at once (issue 15).
    config.backlog = backlog
    config.accesslog = logging.getLogger("pulse.access")
    config.errorlog = logging.getLogger("pulse.server")
    config.access_log_format = '%(h)s "%(m)s %(U)s?%(q)s" %(s)s %(b)s %(D)sus'
    config.logger_class = RedactingLogger
    config.graceful_timeout = 3.0
    # Hard cap on a client frame; the 4 KiB protocol limit answers with an error frame instead.
    config.websocket_max_message_size = 64 * 1024
    config.keep_alive_timeout = 75
    return config


async def _worker_main(config, sockets=None, demo: bool = False) -> None:
    from hypercorn.asyncio.run import worker_serve
    from hypercorn.utils import wrap_app

    from . import create_app
    from .realtime.session import close_all

    app = create_app()
    svc = app.extensions["pulse"]
    if demo:
        from .dashboard.demo import install as install_demo

        install_demo(app, svc)
    tune_gc()
    # Listening before anything says so: the demo's URL (or a readiness check) may be opened as
    # soon as it is printed; connections that arrive before the loop serves wait in the backlog.
    if sockets is None:
        sockets = config.create_sockets()
    for sock in sockets.secure_sockets + sockets.insecure_sockets:
        sock.listen(config.backlog)
    if demo:
        print(f"Pulse demo: open http://{config.bind[0]}/dev/login?user=1", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for name in ("SIGTERM", "SIGINT"):
        loop.add_signal_handler(getattr(signal, name), stop.set)

    async def trigger() -> None:
        await stop.wait()
        log.info("shutdown: closing client connections (1012)")
        svc.shutting_down = True
        await close_all(svc)

    await worker_serve(wrap_app(app, config.wsgi_max_body_size, "asgi"), config,
                       sockets=sockets, shutdown_trigger=trigger)


GC_THRESHOLD = 10_000


def tune_gc() -> None:
    """Keep CPython's cycle collector off the connections (docs/scaling.md, "Garbage
    collection").

    A full collection visits every tracked object, and one comes each time the tracked heap has
    grown by a quarter: while 10,000 clients connect that is several walks over everything the
    process holds, 100–150 ms each here, a third of a connect's CPU. What the app built at start
    (modules, routes, the SQL plans) is frozen out of every collection; the youngest generation
    is collected every ``GC_THRESHOLD`` allocations instead of 700, so the older ones (and their
    quarter-growth rule) are looked at a fourteenth as often. Cyclic garbage still goes: later.
    """
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD, middle, oldest)


def _run_worker(config, sockets, demo: bool) -> None:
    _use_uvloop()
    try:
        asyncio.run(_worker_main(config, sockets, demo))
    except KeyboardInterrupt:
        pass
    leave(0)


def leave(code: int) -> None:
    """End a process whose server has stopped cleanly without the interpreter's teardown.

    By then the clients are gone and the database, Redis and the event loop are closed; what
    CPython's finalization would still do is free, one by one, everything the process built
    (with 10,000 clients' worth of caches, 0.4 s of CPU and 0.55 s before the exit, in a
    restart that the new process waits for: bench/RESULTS.md). The exit handlers still run
    (logging's flush among them, and any an embedding program registered) and stdout and
    stderr are flushed. If a thread other than this one is still running and not a daemon,
    this returns: the interpreter then waits for it as usual."""
    main = threading.main_thread()
    if threading.current_thread() is not main or any(
            thread.is_alive() and not thread.daemon
            for thread in threading.enumerate() if thread is not main):
        return
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed, or a pipe nobody reads any more
            pass
    os._exit(code)


def _use_uvloop() -> None:
    if os.environ.get("PULSE_UVLOOP", "1") in {"0", "false", "no"}:
        return
    try:
        import uvloop
    except ImportError:  # pragma: no cover - optional
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def serve(host: str, port: int, workers: int = 1, demo: bool = False,
          backlog: int = 4096) -> int:
    from .config import load_settings
    from .errors import ConfigError

    try:
        load_settings()
    except ConfigError as exc:
        print(f"pulse: configuration error: {exc.detail}", file=sys.stderr)
        return 2
    config = _config(host, port, backlog)
    if workers <= 1:
        _use_uvloop()
        try:
            asyncio.run(_worker_main(config, demo=demo))
        except KeyboardInterrupt:
            pass
        leave(0)
        return 0
    with _shared_metrics():
        return _serve_workers(config, workers, demo)


@contextlib.contextmanager
def _shared_metrics():
    """A metrics directory the workers share, so a scrape sums them (realtime/metrics.py).

    ``PULSE_METRICS_DIR`` if set (its old snapshots removed: they belong to a previous run),
    otherwise a temporary directory removed at exit. The spawned workers inherit the variable.
    """
    given = os.environ.get("PULSE_METRICS_DIR")
    if given:
        os.makedirs(given, exist_ok=True)
        for name in os.listdir(given):
            if name.startswith("pulse_") and name.endswith((".json", ".tmp")):
                os.unlink(os.path.join(given, name))
        yield given
        return
    directory = tempfile.mkdtemp(prefix="pulse-metrics-")
    os.environ["PULSE_METRICS_DIR"] = directory
    try:
        yield directory
    finally:
        os.environ.pop("PULSE_METRICS_DIR", None)
        shutil.rmtree(directory, ignore_errors=True)


def _serve_workers(config, workers: int, demo: bool) -> int:
    sockets = config.create_sockets()
    ctx = multiprocessing.get_context("spawn")
    processes: list = []
    forwarded: set[int] = set()

    def forward(signum, _frame) -> None:
        forwarded.add(signum)
        for process in processes:
            if process.is_alive():
                os.kill(process.pid, signum)

    # In place before any worker exists: a signal while they start is passed on, not fatal here.
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for index in range(workers):
        if forwarded:
            break  # asked to stop before all were started: start no more
        # Only the first worker runs the demo simulator: one producer for the whole service.
        process = ctx.Process(target=_run_worker, args=(config, sockets, demo and index == 0))
        process.start()
        processes.append(process)
        for signum in forwarded:  # a signal that came during start() missed this one
            os.kill(process.pid, signum)
    code = 0
    for process in processes:
        process.join()
        # A worker still starting when the signal came (before its handlers were in place) is
        # ended by it: asked to stop, it stopped, which is no failure of the service.
        status = process.exitcode or 0
        if status < 0 and -status in forwarded:
            status = 0
        code = code or status
    for sock in sockets.secure_sockets + sockets.insecure_sockets:
        sock.close()
    return code
