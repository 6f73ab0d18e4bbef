"""Turn a bench result (bench/run.py's JSON) into Markdown tables.

    python bench/report.py bench/out/result-*.json   # one table over every file given
"""
from __future__ import annotations

import json
import sys

TARGETS = "targets: <= 4 us/delivery, <= 12 KB/conn, p99 < 50 ms at 10 bcast/s, >= 250k/s, idle < 2 %"


def _get(case: dict, *path, default=None):
    value = case
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return default
        value = value[key]
    return value


def _fmt(value, digits: int = 1, suffix: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}{suffix}"
    if isinstance(value, int):
        return f"{value:,}{suffix}"
    return str(value)


def _cpu(window: dict) -> str:
    """``total (user + sys)`` µs per delivery of one window."""
    total = window.get("cpu_us_per_delivery")
    if total is None:
        return "–"
    return (f"{total:.2f} ({window.get('user_us_per_delivery', 0):.1f}+"
            f"{window.get('sys_us_per_delivery', 0):.1f})")


def _runq(window: dict) -> str:
    """Share of the window the server spent runnable but waiting for its core."""
    cpu = window.get("server_cpu") if window else None
    if not cpu or not cpu.get("wall_s") or "runq_wait_s" not in cpu:
        return "–"
    return f"{100 * cpu['runq_wait_s'] / cpu['wall_s']:.0f} %"


def row(case: dict) -> str:
    label = f"{case['server']} {case['transport']}"
    if case.get("workers", 1) > 1:
        label += f" ×{case['workers']} workers"
    if case.get("entry") == "hypercorn":
        label += " (Hypercorn CLI)"
    if case.get("database") == "postgresql":
        label += " (PG)"
    if case.get("publish") == "api":
        label += " via /api/events"
    if "error" in case or "unavailable" in case:
        note = case.get("error") or case.get("unavailable")
        return f"| {label} | {case['clients']:,} | {note} |" + " |" * 12
    burst, rate, flood = case.get("burst", {}), case.get("rate", {}), case.get("flood", {})
    if rate and not rate.get("received"):
        rate = {k: v for k, v in rate.items() if k != "lat_ms"}  # nothing arrived: no latency
    client_pct = max(w.get("client_cpu_pct", 0) for w in (burst, rate, flood) if w)
    cells = [
        label,
        _fmt(case["clients"]),
        _fmt(_get(case, "connect", "connect_s"), 1, " s"),
        _cpu(burst),
        _cpu(rate),
        _cpu(flood),
        _fmt(case.get("kb_per_conn"), 1),
        _fmt(_get(rate, "lat_ms", "p50"), 1),
        _fmt(_get(rate, "lat_ms", "p99"), 1),
        _fmt(_get(rate, "lat_ms", "max"), 1),
        _fmt(min(x for x in (burst.get("delivered_fraction"), rate.get("delivered_fraction"),
                             flood.get("delivered_fraction")) if x is not None)
             if burst else None, 4),
        _fmt(flood.get("deliveries_per_s")),
        _fmt(_get(case, "idle", "cpu_pct"), 2, " %"),
        _fmt(client_pct, 0, " %"),
        _runq(rate),
    ]
    return "| " + " | ".join(cells) + " |"


HEADER = ("| server | N | connect | CPU µs/delivery burst (user+sys) | … @10/s | … flood | "
          "KB/idle conn | p50 ms @10/s | p99 ms @10/s | max ms @10/s | delivered | "
          "max deliveries/s | idle CPU | client CPU (max) | server waiting for its core @10/s |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


def markdown_table(*results: dict) -> str:
    lines = [HEADER]
    for result in results:
        for case in result["cases"]:
            lines.append(row(case))
    return "\n".join(lines) + "\n\n" + TARGETS


if __name__ == "__main__":
    loaded = []
    for path in sys.argv[1:]:
        with open(path) as fh:
            loaded.append(json.load(fh))
    print(markdown_table(*loaded))
