"""What the bench reads from /proc about a process tree: CPU time and resident memory.

* CPU: ``utime + stime`` (fields 14 and 15 of ``/proc/<pid>/stat``, in clock ticks, all threads
  included) summed over the server process and its descendants (``--workers N`` forks). A tick is
  10 ms, so the bench also sums ``/proc/<pid>/task/*/schedstat`` (nanoseconds on CPU) as a
  precise cross-check for short windows.
* Memory: ``VmRSS`` of ``/proc/<pid>/status``, in KiB, summed the same way.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as fh:
        raw = fh.read()
    # The command name (field 2) may contain spaces: split after its closing parenthesis.
    return raw[raw.rindex(")") + 2:].split()


def descendants(root: int) -> list[int]:
    """``root`` and every process below it."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(name))[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def cpu_split(pids: list[int]) -> tuple[float, float]:
    """(utime, stime) of ``pids`` (all threads), in seconds; vanished processes count 0."""
    user = system = 0
    for pid in pids:
        try:
            fields = _stat_fields(pid)
        except OSError:
            continue
        user += int(fields[11])    # utime (field 14)
        system += int(fields[12])  # stime (field 15)
    return user / TICK, system / TICK


def cpu_seconds(pids: list[int]) -> float:
    return sum(cpu_split(pids))


def sched_seconds(pids: list[int]) -> tuple[float, float]:
    """(on CPU, waiting for a CPU) from every thread's schedstat, in seconds (ns resolution).

    The second figure is how long the server was runnable but another process had its core:
    the machine is shared, and this says how much a window was disturbed.
    """
    total = waited = 0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as fh:
                    fields = fh.read().split()
                total += int(fields[0])
                waited += int(fields[1])
            except (OSError, ValueError, IndexError):
                continue
    return total / 1e9, waited / 1e9


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


@dataclass
class CpuSample:
    wall: float
    user: float
    system: float
    sched: float
    runq: float
    load: float

    @classmethod
    def take(cls, pids: list[int]) -> "CpuSample":
        user, system = cpu_split(pids)
        with open("/proc/loadavg") as fh:
            load = float(fh.read().split()[0])
        return cls(time.monotonic(), user, system, *sched_seconds(pids), load)

    def since(self, earlier: "CpuSample") -> dict:
        wall = self.wall - earlier.wall
        user = self.user - earlier.user
        system = self.system - earlier.system
        cpu = user + system
        sched = self.sched - earlier.sched
        return {"wall_s": round(wall, 4), "cpu_s": round(cpu, 4), "user_s": round(user, 4),
                "sys_s": round(system, 4), "sched_s": round(sched, 4),
                "runq_wait_s": round(self.runq - earlier.runq, 4), "loadavg_1m": self.load,
                "cpu_pct": round(100 * cpu / wall, 2) if wall > 0 else 0.0,
                "sched_pct": round(100 * sched / wall, 2) if wall > 0 else 0.0}


def thread_split(pids: list[int]) -> dict[str, float]:
    """CPU seconds (utime + stime) of each process's main thread (``loop_s``: the event loop)
    and of all its other threads (``threads_s``: e.g. the aiosqlite worker threads, one per
    SQLite connection, whose queries run in C without the GIL). ``threads_s`` is the process
    total (which keeps the time of threads that have ended: SQLite connections beyond the pool's
    idle ones are closed after use, their threads with them) minus the main thread."""
    loop = total = 0
    for pid in pids:
        try:
            proc = _stat_fields(pid)
            with open(f"/proc/{pid}/task/{pid}/stat") as fh:
                raw = fh.read()
        except OSError:
            continue
        main = raw[raw.rindex(")") + 2:].split()
        total += int(proc[11]) + int(proc[12])
        loop += int(main[11]) + int(main[12])
    return {"loop_s": loop / TICK, "threads_s": (total - loop) / TICK}


def thread_delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: round(after[k] - before.get(k, 0.0), 3) for k in after}
