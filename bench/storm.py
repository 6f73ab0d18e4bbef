#!/usr/bin/env python
"""Reconnect storms (issue 15): N subscribed clients lose their connections at once and come back
with ``since`` while publications go on. See bench/README.md ("Reconnect storms").

One *case* = one server (Pulse or the Node ``ws`` peer), N WebSocket clients:

1. start the server pinned to core 0 (as ``run.py`` does: same ``Server``, ``Client``, warm-up);
2. **connect**: N clients (64 handshakes in flight), each its own user, subscribe to
   ``dashboard`` -> connect time, server CPU per connect (auth + subscribe + snapshot: the CPU
   is read once the server is quiet again, because the snapshot goes out after the ack);
3. **idle**: server CPU over ``--idle-seconds`` with the N connections open;
4. **steady**: publications start at ``--rate``/s (Pulse: the service's Lua script; Node: raw
   ``PUBLISH``) and go on until the end of the case; server CPU over ``--steady-seconds`` is the
   publishing rate subtracted below;
5. **storm**, for each ``--modes``:
   * ``drop``: every client closes its socket at once (no close frame) and reconnects at once;
   * ``restart``: SIGTERM the server (Pulse closes every WebSocket with 1012), start it again on
     the same port with the same Redis prefix and database once the old process is gone; every
     client reconnects as soon as it notices the close and retries until the port accepts.
   Each client resubscribes with ``since`` (+ ``user_since`` and ``epoch``), and checks that its
   offsets are contiguous across the storm. Reported: time until every client is resubscribed,
   reconnect latency per client, server CPU per reconnect, failed attempts by kind, clients
   refused or timed out, holes/lost/duplicates, ``recovered: false`` acks;
6. **final check**: publishing stops, and every client must reach the channel's latest offset.

Every wait is bounded; servers, clients, publishers and profilers are stopped by PID.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import procstat  # noqa: E402
import run  # noqa: E402  (the helpers: Server, Client, build_client, profiles, settle, ...)
from publisher import Publisher  # noqa: E402

TARGETS = ("targets (issue 15, one core): <= 0.3 ms server CPU per connect at 10,000; 10,000 "
           "connect in <= 3 s, none refused; 10,000-client storm with recovery <= 5 s, 0 lost; "
           "idle CPU < 0.5 % with 10,000 idle clients")


# -- publications throughout --------------------------------------------------------------
class Ticker:
    """Publish ``rate`` items a second on an absolute schedule until stopped (a task)."""

    def __init__(self, pub: Publisher, rate: float, seq: int) -> None:
        self.pub, self.rate, self.seq = pub, rate, seq
        self.published = self.errors = 0
        self.late_max_s = 0.0
        self.first_error = ""
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        t0 = time.monotonic()
        i = 0
        while not self._stop.is_set():
            delay = t0 + i / self.rate - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(self._stop.wait(), delay)
                    break
                except TimeoutError:
                    pass
            else:
                self.late_max_s = max(self.late_max_s, -delay)
            try:
                await self.pub.publish(self.seq + i)
                self.published += 1
            except Exception as exc:  # Redis is independent of the server: should not happen
                self.errors += 1
                self.first_error = self.first_error or f"{type(exc).__name__}: {exc}"
            i += 1

    async def stop(self) -> dict:
        self._stop.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, 30)
        return {"published": self.published, "errors": self.errors,
                "late_max_s": round(self.late_max_s, 4), "first_error": self.first_error}


# -- helpers --------------------------------------------------------------------------------
async def read(client: run.Client, timeout: float) -> dict:
    return await asyncio.to_thread(client.read, timeout)


async def command(client: run.Client, text: str, timeout: float) -> dict:
    client.send(text)
    return await read(client, timeout)


def port_accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        try:
            sock.connect(("127.0.0.1", port))
            return True
        except OSError:
            return False


def scrape_counters(port: int) -> dict[str, float]:
    """Pulse's ``/metrics`` counters (``pulse_*_total``), or {} (the Node peer has none)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    except OSError:
        return {}
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        return {}
    counters = {}
    for line in body.decode(errors="replace").splitlines():
        name, _, value = line.rpartition(" ")
        if name.startswith("pulse_") and "_total" in name:
            try:
                counters[name[6:].replace("_total", "", 1)] = float(value)
            except ValueError:
                pass
    return counters


def counters_delta(after: dict, before: dict) -> dict:
    """What changed (a restarted server starts from 0: ``before`` is then {})."""
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0)}


def stop_profile_now(profiler) -> None:
    """py-spy writes what it has and exits on SIGINT: end the window with the storm."""
    if profiler is not None and profiler[0].poll() is None:
        os.kill(profiler[0].pid, signal.SIGINT)


def per_n(cpu_s: float, n: int) -> float | None:
    return round(cpu_s / n * 1e3, 3) if n else None


def cpu_window(cpu: dict, publishing_rate: float) -> dict:
    """A window's CPU, and the same net of the steady publishing rate (CPU s per wall s)."""
    net = max(0.0, cpu["cpu_s"] - publishing_rate * cpu["wall_s"])
    return {**cpu, "net_cpu_s": round(net, 4)}


async def quiet(server: run.Server, minimum: float, timeout: float, pct: float) -> dict:
    return await asyncio.to_thread(run.settle, server, minimum, timeout, pct)


def offsets_delta(before: dict, after: dict) -> dict:
    keys = ("holes", "lost", "dups", "acks", "recovered_true", "recovered_false",
            "skipped_unrecovered", "recovered_false_within_history", "ack_gap", "ack_behind")
    return {k: after[k] - before[k] for k in keys}


# -- the storms -----------------------------------------------------------------------------
async def storm_drop(args, client, server, name, n, steady_rate, result) -> dict:
    before = (await command(client, "waitoff -1 0", 10))["offsets"]
    counters0 = await asyncio.to_thread(scrape_counters, server.port)
    profiler = await asyncio.to_thread(run.start_profile, args, server, name, "storm-drop",
                                       args.storm_timeout)
    cpu0 = procstat.CpuSample.take(server.pids)
    threads0 = procstat.thread_split(server.pids)
    dropped = await command(client, f"drop {args.storm_jitter}", 30)
    report = await command(client, f"stormwait {args.storm_timeout}", args.storm_timeout + 30)
    cpu_acked = procstat.CpuSample.take(server.pids).since(cpu0)
    stop_profile_now(profiler)
    settled = await quiet(server, 0.5, args.settle_timeout, steady_rate * 100 + 10)
    cpu_all = procstat.CpuSample.take(server.pids).since(cpu0)
    threads = procstat.thread_delta(procstat.thread_split(server.pids), threads0)
    await asyncio.to_thread(run.finish_profile, profiler, result, "storm-drop")
    figures = storm_figures("drop", report, dropped, before, cpu_acked, cpu_all, steady_rate,
                            settled, n)
    figures["server_cpu_by_thread"] = threads
    figures["server_counters"] = counters_delta(
        await asyncio.to_thread(scrape_counters, server.port), counters0)
    return figures


async def storm_restart(args, client, case, name, n, steady_rate, result) -> dict:
    """SIGTERM, wait for the old process to go, start it again on the same port, prefix and
    database; the clients reconnect as soon as the port accepts."""
    old: run.Server = case["server"]
    before = (await command(client, "waitoff -1 0", 10))["offsets"]
    armed = await command(client, f"arm {args.storm_jitter}", 10)
    # py-spy on the stopping process, attached before the signal, ends when it exits.
    stopping = await asyncio.to_thread(run.start_profile, args, old, name, "shutdown", 30)
    old_cpu0 = procstat.cpu_split(old.pids)
    t_sig = time.monotonic()
    os.kill(old.pid, signal.SIGTERM)
    # The old process's whole CPU (rusage of the reaped child) minus what it had used before.
    try:
        _pid, status, usage = await asyncio.wait_for(
            asyncio.to_thread(os.wait4, old.pid, 0), 30)
        old.proc.returncode = os.waitstatus_to_exitcode(status)
        old_cpu = {"user_s": round(usage.ru_utime - old_cpu0[0], 3),
                   "sys_s": round(usage.ru_stime - old_cpu0[1], 3)}
        old_cpu["cpu_s"] = round(old_cpu["user_s"] + old_cpu["sys_s"], 3)
    except TimeoutError:
        old.stop()  # SIGKILL after its own wait
        old_cpu = {"cpu_s": None, "note": "did not exit within 30 s"}
    t_exit = time.monotonic()
    await asyncio.to_thread(run.finish_profile, stopping, result, "shutdown")
    old.stop()  # closes its log
    os.replace(old.log_path, old.log_path + ".before-restart")
    new = run.Server(old.kind, old.port, old.workers, case["cpus"], args.python, case["work"],
                     args.redis_url, case["prefix"], args.source_dir, args.pulse_entry,
                     case["database_url"])
    case["server"] = new
    deadline = time.monotonic() + 60
    while not await asyncio.to_thread(port_accepts, old.port):
        if new.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"restarted server never accepted: {new.log_tail()}")
        await asyncio.sleep(0.005)
    t_listen = time.monotonic()
    cpu0 = procstat.CpuSample.take(new.pids)
    threads0 = procstat.thread_split(new.pids)
    await command(client, "up", 10)  # failures from here on are the new server's
    startup_cpu = round(cpu0.user + cpu0.system, 3)
    profiler = await asyncio.to_thread(run.start_profile, args, new, name, "storm-restart",
                                       args.storm_timeout)
    report = await read_after(client, f"stormwait {args.storm_timeout}",
                              args.storm_timeout + 30)
    cpu_acked = procstat.CpuSample.take(new.pids).since(cpu0)
    stop_profile_now(profiler)
    settled = await quiet(new, 0.5, args.settle_timeout, steady_rate * 100 + 10)
    cpu_all = procstat.CpuSample.take(new.pids).since(cpu0)
    threads = procstat.thread_delta(procstat.thread_split(new.pids), threads0)
    await asyncio.to_thread(run.finish_profile, profiler, result, "storm-restart")
    figures = storm_figures("restart", report, armed, before, cpu_acked, cpu_all, steady_rate,
                            settled, n)
    figures["server_cpu_by_thread"] = threads
    figures["server_counters"] = await asyncio.to_thread(scrape_counters, new.port)
    last_ack = report["last_ack"] or time.monotonic()
    figures["restart"] = {
        "old_exit_s": round(t_exit - t_sig, 3), "new_listening_s": round(t_listen - t_exit, 3),
        "sigterm_to_all_resubscribed_s": round(last_ack - t_sig, 3),
        "listening_to_all_resubscribed_s": round(last_ack - t_listen, 3),
        "old_server_cpu_after_sigterm": old_cpu, "new_server_startup_cpu_s": startup_cpu,
    }
    return figures


async def read_after(client, text: str, timeout: float) -> dict:
    client.send(text)
    return await read(client, timeout)


def storm_figures(mode, report, trigger, before, cpu_acked, cpu_all, steady_rate, settled,
                  n) -> dict:
    done = report["resubscribed"]
    window = cpu_window(cpu_all, steady_rate)
    return {
        "mode": mode, "clients": report["target"], "resubscribed": done,
        "complete": report["complete"], "all_resubscribed_s": report["all_s"],
        "reconnect_ms": report["reconnect_ms"],
        "reconnect_after_up_ms": report["reconnect_after_up_ms"], "attempts": report["attempts"],
        "failures": report["failures"], "failures_after_up": report["failures_after_up"],
        "clients_refused": report["clients_refused_after_up"],
        "clients_timed_out": report["clients_timed_out_after_up"],
        "clients_refused_incl_down": report["clients_refused"],
        "clients_timed_out_incl_down": report["clients_timed_out"],
        "not_resubscribed": report["not_resubscribed"], "first_error": report["first_error"],
        "offsets": offsets_delta(before, report["offsets"]),
        "server_cpu_to_last_ack": cpu_acked, "server_cpu_to_quiet": window,
        "settle": settled,
        "cpu_ms_per_reconnect": per_n(window["cpu_s"], done),
        "net_cpu_ms_per_reconnect": per_n(window["net_cpu_s"], done),
        "cpu_ms_per_reconnect_to_last_ack": per_n(cpu_acked["cpu_s"], done),
        "client_cpu_s": report["client_cpu_s"], "trigger": trigger,
    }


# -- one case -------------------------------------------------------------------------------
async def run_case(args, kind: str, n: int, binary: str, tokens: str) -> dict:
    work = tempfile.mkdtemp(prefix="pulse-storm-", dir=args.out)
    port = run.free_port()
    prefix = f"pulse-bench:{uuid.uuid4().hex[:10]}:"
    cpus = args.server_cpus
    publish_mode = "lua" if kind == "pulse" else "raw"
    result: dict = {"server": kind, "clients": n, "publish": publish_mode, "rate": args.rate,
                    "server_cpus": cpus, "client_cpus": args.client_cpus,
                    "offsets": kind == "pulse", "storms": []}
    if kind != "pulse":
        result["note"] = ("the Node peer has no offsets and no recovery: its clients resubscribe "
                          "without since; lost/holes are not measured, only reconnect time and "
                          "CPU")
    name = f"{kind}-ws-{n}"
    print(f"== storm {name}: starting", file=sys.stderr, flush=True)
    database_url = (await run.pg_create(args.postgres)
                    if args.postgres and kind == "pulse" else None)
    result["database"] = "postgresql" if database_url else "sqlite"
    server = run.Server(kind, port, 1, cpus, args.python, work, args.redis_url, prefix,
                        args.source_dir, args.pulse_entry, database_url)
    case = {"server": server, "work": work, "prefix": prefix, "cpus": cpus,
            "database_url": database_url}
    client = warm = ticker = None
    pub = Publisher(publish_mode, args.redis_url, prefix, port=port, api_key=run.API_KEY)
    try:
        server.wait_ready()
        result["server_affinity"] = sorted(set().union(
            *(os.sched_getaffinity(pid) for pid in server.pids)))
        await pub.open()
        warm = run.Client(binary, port, min(20, n), "ws", tokens, args.client_cpus, work)
        warm.read(60)
        await run.publish_window(warm, server, pub, warm.n, 2, None, 5, 0)
        warm.stop()
        warm = None
        await asyncio.sleep(1.0)

        # connect: as run.py, then until the server is quiet (the snapshot follows the ack)
        profiler = await asyncio.to_thread(run.start_profile, args, server, name, "connect",
                                           5 + n / 150)
        counters0 = await asyncio.to_thread(scrape_counters, port)
        connect0 = procstat.CpuSample.take(server.pids)
        threads0 = procstat.thread_split(server.pids)
        client = run.Client(binary, port, n, "ws", tokens, args.client_cpus, work, (
            "--handshake-timeout", str(args.handshake_timeout),
            "--retry-base", str(args.retry_base), "--retry-cap", str(args.retry_cap),
            "--storm-concurrency", str(args.storm_concurrency),
            "--history-size", str(args.history_size),
            "--concurrency", str(args.connect_concurrency)))
        ready = await read(client, 60 + n / 50)
        at_ready = procstat.CpuSample.take(server.pids).since(connect0)
        stop_profile_now(profiler)
        settled = await quiet(server, 0.5, args.settle_timeout, 10.0)
        connect_cpu = procstat.CpuSample.take(server.pids).since(connect0)
        threads = procstat.thread_delta(procstat.thread_split(server.pids), threads0)
        await asyncio.to_thread(run.finish_profile, profiler, result, "connect")
        result["connect"] = {**ready, "server_cpu_to_ready": at_ready,
                             "server_cpu_to_quiet": connect_cpu, "settle": settled,
                             "server_cpu_by_thread": threads,
                             "server_counters": counters_delta(
                                 await asyncio.to_thread(scrape_counters, port), counters0),
                             "cpu_ms_per_connect": per_n(connect_cpu["cpu_s"], ready["connected"]),
                             "cpu_ms_per_connect_to_ready": per_n(at_ready["cpu_s"],
                                                                  ready["connected"])}
        print(f"   connected {ready['connected']}/{n} in {ready['connect_s']} s, "
              f"{result['connect']['cpu_ms_per_connect']} ms CPU/connect "
              f"({ready['failed']} failed: {ready['first_error']})", file=sys.stderr, flush=True)
        server.check()

        profiler = await asyncio.to_thread(run.start_profile, args, server, name, "idle",
                                           args.idle_seconds)
        idle0 = procstat.CpuSample.take(server.pids)
        await asyncio.sleep(args.idle_seconds)
        result["idle"] = procstat.CpuSample.take(server.pids).since(idle0)
        stop_profile_now(profiler)
        await asyncio.to_thread(run.finish_profile, profiler, result, "idle")
        print(f"   idle {result['idle']['cpu_pct']} %", file=sys.stderr, flush=True)

        ticker = Ticker(pub, args.rate, 10_000)
        ticker.start()
        await asyncio.sleep(1.0)
        steady0 = procstat.CpuSample.take(server.pids)
        await asyncio.sleep(args.steady_seconds)
        steady = procstat.CpuSample.take(server.pids).since(steady0)
        steady_rate = steady["cpu_s"] / steady["wall_s"] if steady["wall_s"] else 0.0
        result["steady"] = steady
        print(f"   steady {args.rate}/s: server {steady['cpu_pct']} %", file=sys.stderr,
              flush=True)

        for mode in args.modes.split(","):
            if result["storms"] and not result["storms"][-1]["complete"]:
                # its clients are still reconnecting: a new storm would measure both
                result["storms"].append({"mode": mode, "skipped": "the storm before it did "
                                         "not complete within --storm-timeout"})
                print(f"   storm {mode}: skipped (the one before did not complete)",
                      file=sys.stderr, flush=True)
                continue
            if mode == "drop":
                figures = await storm_drop(args, client, case["server"], name, n, steady_rate,
                                           result)
            elif mode == "restart":
                figures = await storm_restart(args, client, case, name, n, steady_rate, result)
            else:
                raise ValueError(f"unknown storm mode {mode!r}")
            result["storms"].append(figures)
            print(f"   storm {mode}: {figures['resubscribed']}/{figures['clients']} "
                  f"resubscribed in {figures['all_resubscribed_s']} s"
                  + (f" ({figures['restart']['listening_to_all_resubscribed_s']} s after the "
                     f"port accepted)" if mode == "restart" else "")
                  + f", {figures['cpu_ms_per_reconnect']} ms CPU/reconnect, "
                  f"refused {figures['clients_refused']}, timed out "
                  f"{figures['clients_timed_out']}, lost {figures['offsets']['lost']}, "
                  f"recovered:false {figures['offsets']['recovered_false']}",
                  file=sys.stderr, flush=True)
            case["server"].check()
            await asyncio.sleep(args.between_seconds)

        result["publisher"] = await ticker.stop()
        ticker = None
        if kind == "pulse":
            latest, _epoch = await pub._broker.latest("dashboard")
            final = await command(client, f"waitoff {latest} {args.drain_timeout}",
                                  args.drain_timeout + 15)
            result["final"] = {"latest_offset": latest, **final}
        result["dump"] = (await command(
            client, f"dump {os.path.join(args.out, f'clients-{name}.tsv')}", 30))["path"]
        result["server_log_tail"] = case["server"].log_tail()
    except Exception as exc:  # a failed case is recorded; the run goes on
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["server_log_tail"] = case["server"].log_tail()
        print(f"   error: {result['error']}", file=sys.stderr)
    finally:
        if ticker is not None:
            try:
                await ticker.stop()
            except Exception:
                pass
        for proc in (warm, client):
            if proc is not None:
                proc.stop()
        await pub.close()
        case["server"].stop()
        if database_url:
            await run.pg_drop(args.postgres, database_url)
        if not args.keep_work:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
        else:
            result["work_dir"] = work
    return result


# -- report ---------------------------------------------------------------------------------
def _f(value, digits=1, suffix=""):
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}{suffix}"
    if isinstance(value, int):
        return f"{value:,}{suffix}"
    return str(value)


HEADER = ("| server | N | connect (all subscribed) | server CPU ms/connect | connect refused | "
          "idle CPU | server CPU @rate | storm | all resubscribed | … after port accepts | "
          "reconnect p50 / p99 ms | server CPU ms/reconnect (net of publishing) | "
          "refused / timed out (clients, server up) | lost | dups | recovered:false | "
          "server waiting for its core (connect / storm) |\n"
          "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


def _runq(cpu: dict | None) -> str:
    if not cpu or not cpu.get("wall_s"):
        return "–"
    return f"{100 * cpu['runq_wait_s'] / cpu['wall_s']:.0f} %"


def table(result: dict) -> str:
    lines = [HEADER]
    for case in result["cases"]:
        label, n = case["server"], case["clients"]
        if "error" in case and "connect" not in case:
            lines.append(f"| {label} | {n:,} | {case['error']} |" + " |" * 14)
            continue
        c = case["connect"]
        head = [label, _f(n), _f(c["connect_s"], 1, " s"), _f(c["cpu_ms_per_connect"], 2),
                _f(c["failed"]), _f(case.get("idle", {}).get("cpu_pct"), 2, " %"),
                _f(case.get("steady", {}).get("cpu_pct"), 0, " %")]
        storms = case["storms"] or [None]
        for i, s in enumerate(storms):
            cells = head if i == 0 else ["", "", "", "", "", "", ""]
            if s is not None and "skipped" in s:
                lines.append("| " + " | ".join(cells + [s["mode"], "skipped: " + s["skipped"]]
                                               + ["–"] * 9) + " |")
                continue
            if s is None:
                lines.append("| " + " | ".join(cells + [case.get("error", "–")] + ["–"] * 9)
                             + " |")
                continue
            tracked = case["offsets"]
            off = s["offsets"]
            after_port = s.get("restart", {}).get("listening_to_all_resubscribed_s")
            done = (_f(s["all_resubscribed_s"], 2, " s") if s["complete"]
                    else f"{s['resubscribed']:,}/{s['clients']:,} in {s['all_resubscribed_s']:.1f} s")
            lines.append("| " + " | ".join(cells + [
                s["mode"], done, _f(after_port, 2, " s"),
                f"{s['reconnect_after_up_ms']['p50']:,.0f} / "
                f"{s['reconnect_after_up_ms']['p99']:,.0f}",
                f"{_f(s['cpu_ms_per_reconnect'], 2)} ({_f(s['net_cpu_ms_per_reconnect'], 2)})",
                f"{s['clients_refused']:,} / {s['clients_timed_out']:,}",
                _f(off["lost"]) if tracked else "n/a", _f(off["dups"]) if tracked else "n/a",
                (f"{off['recovered_false']:,} ({off['recovered_false_within_history']:,} "
                 f"within history)" if off["recovered_false"] else "0") if tracked else "n/a",
                f"{_runq(c['server_cpu_to_quiet'])} / {_runq(s['server_cpu_to_quiet'])}"]) + " |")
    return "\n".join(lines) + "\n\n" + TARGETS


# -- command line ---------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Pulse reconnect storms (see bench/README.md)")
    p.add_argument("--servers", default="pulse", help="pulse,node")
    p.add_argument("--clients", default="1000", help="comma-separated N")
    p.add_argument("--modes", default="drop,restart", help="drop,restart (in this order)")
    p.add_argument("--rate", type=float, default=10.0, help="publications/s throughout")
    p.add_argument("--idle-seconds", type=float, default=10.0)
    p.add_argument("--steady-seconds", type=float, default=3.0)
    p.add_argument("--between-seconds", type=float, default=2.0,
                   help="publishing goes on this long after each storm")
    p.add_argument("--storm-timeout", type=float, default=None,
                   help="seconds until a storm is given up (default 30 + N/200)")
    p.add_argument("--storm-jitter", type=float, default=0.0,
                   help="each client reconnects after U(0, J) s (the packaged client: 1 s for "
                        "1012); 0 = all at once")
    p.add_argument("--storm-concurrency", type=int, default=0,
                   help="reconnect handshakes in flight (0 = no limit)")
    p.add_argument("--connect-concurrency", type=int, default=64)
    p.add_argument("--handshake-timeout", type=float, default=10.0,
                   help="an attempt without its ack after this long is a timeout (and retried)")
    p.add_argument("--retry-base", type=float, default=0.05)
    p.add_argument("--retry-cap", type=float, default=0.5)
    p.add_argument("--history-size", type=int, default=1000,
                   help="PULSE_HISTORY_SIZE: a recovered:false for a gap within it is suspect")
    p.add_argument("--settle-timeout", type=float, default=60.0)
    p.add_argument("--drain-timeout", type=float, default=30.0)
    p.add_argument("--server-cpus", default="0")
    p.add_argument("--client-cpus", default="1")
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    p.add_argument("--python", default=sys.executable, help="interpreter for the servers")
    p.add_argument("--postgres", default=None, metavar="ADMIN_URL")
    p.add_argument("--pulse-entry", default="main", choices=["main", "module", "hypercorn"])
    p.add_argument("--source", default="worktree",
                   help="'worktree', a git revision (archived), or a directory with quart_app/")
    p.add_argument("--out", default=os.path.join(HERE, "out"))
    p.add_argument("--json", default=None)
    p.add_argument("--profile", default="",
                   help="py-spy these windows: connect,idle,storm-drop,storm-restart, "
                        "shutdown (the old process, SIGTERM to exit)")
    p.add_argument("--keep-work", action="store_true")
    args = p.parse_args(argv)
    if not args.rate > 0:
        p.error("--rate must be above 0: the loss check follows offsets that publications make")
    return args


async def main(argv=None) -> dict:
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    args.out = os.path.abspath(args.out)
    sizes = [int(x) for x in args.clients.split(",") if x]
    # a storm can hold old and new sockets at once (each process needs N + a reserve at least)
    limit = run.raise_nofile(max(sizes) * 2 + 1024)
    if limit < max(sizes) + 512:
        raise SystemExit(f"storm: RLIMIT_NOFILE {limit} is too low for {max(sizes)} clients")
    if args.client_cpus and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {int(c) for c in args.client_cpus.split(",")})
    binary = run.build_client(args.out)
    args.source_dir = run.snapshot(args.source, args.out)
    sys.path.insert(0, args.source_dir)
    tokens = os.path.join(args.out, "tokens.txt")
    run.write_tokens(tokens, max(sizes))
    cases = []
    for kind in args.servers.split(","):
        for n in sizes:
            if args.storm_timeout is None:
                args.storm_timeout = 30 + n / 200
                chosen = True
            else:
                chosen = False
            cases.append(await run_case(args, kind, n, binary, tokens))
            if chosen:
                args.storm_timeout = None
    result = {"machine": run.machine(), "source": args.source,
              "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
              "options": {k: v for k, v in vars(args).items() if k != "source_dir"},
              "cases": cases}
    path = args.json or os.path.join(
        args.out, f"storm-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}.json")
    with open(path, "w") as fh:
        json.dump(result, fh, indent=2)
    print(table(result))
    print(f"\nwritten: {path}", file=sys.stderr)
    return result


if __name__ == "__main__":
    asyncio.run(main())
