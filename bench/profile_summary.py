"""Summarise a py-spy ``--format raw`` profile (collapsed stacks): where the samples go.

    python bench/profile_summary.py bench/out/profile-pulse-ws-10000-w1-flood.txt [--top 25]

Prints the share of samples per leaf function (self time) and per function anywhere on the
stack (inclusive time), with file names shortened to the package.

``--exclude FILE:LINE`` (repeatable) drops the samples whose leaf frame is that line, and says
how many. On a server pinned to one core, py-spy counts a thread that is runnable but waiting for
the core as active: the aiosqlite worker thread, woken with a query while the event loop has the
core, is sampled at its queue ``get()`` (``aiosqlite/core.py:59`` in aiosqlite 0.22) without
using any CPU; its SQLite work (in C, GIL released) is the ``function()`` line (``:63``).
"""
from __future__ import annotations

import argparse
import re
from collections import Counter

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _short(frame: str, lines: bool = False) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match.group("file")
    for marker in ("site-packages/", "lib/python3", "/work/main/", "/work/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    if lines and match.group("line"):
        path += f":{match.group('line')}"
    return f"{match.group('func')} ({path})"


def _thread_of(frames: list[str]) -> str:
    """``main`` (the event loop) or ``other`` (a threading.Thread: the SQLite workers ...)."""
    return "other" if any(f.startswith("Thread._bootstrap ") for f in frames) else "main"


def load(path: str, exclude: tuple[str, ...] = (), thread: str = "all",
         lines: bool = False) -> tuple[Counter, Counter, int]:
    own: Counter = Counter()
    inclusive: Counter = Counter()
    total = 0
    load.excluded = 0
    with open(path) as fh:
        for line in fh:
            line = line.rstrip("\n")
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            frames = [f for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
            if not frames:
                continue
            if thread != "all" and _thread_of(frames) != thread:
                continue
            if exclude and any(e in frames[-1] for e in exclude):
                load.excluded += n
                continue
            total += n
            names = [_short(f, lines) for f in frames]
            own[names[-1]] += n
            for name in set(names):
                inclusive[name] += n
    return own, inclusive, total


def summary(path: str, top: int = 25, exclude: tuple[str, ...] = (), thread: str = "all",
            with_lines: bool = False) -> str:
    own, inclusive, total = load(path, exclude, thread, with_lines)
    if not total:
        return f"{path}: no samples"
    dropped = (f" ({load.excluded} more excluded: leaf at {', '.join(exclude)})"
               if exclude else "")
    which = "" if thread == "all" else f", {thread} thread only"
    lines = [f"{path}: {total} samples{which}{dropped}", "", "self time:"]
    for name, n in own.most_common(top):
        lines.append(f"  {100 * n / total:5.1f} %  {name}")
    lines += ["", "inclusive time:"]
    for name, n in inclusive.most_common(top):
        lines.append(f"  {100 * n / total:5.1f} %  {name}")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--exclude", action="append", default=[], metavar="FILE:LINE",
                        help="drop samples whose leaf frame contains this (e.g. "
                             "aiosqlite/core.py:59, a wait)")
    parser.add_argument("--thread", default="all", choices=["all", "main", "other"],
                        help="main: the event loop thread only; other: threading.Threads only")
    parser.add_argument("--lines", action="store_true", help="keep line numbers")
    args = parser.parse_args()
    for p in args.paths:
        print(summary(p, args.top, tuple(args.exclude), args.thread, args.lines))
        print()
