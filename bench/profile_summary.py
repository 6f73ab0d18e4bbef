"""Summarise a py-spy ``--format raw`` profile (collapsed stacks): where the samples go.

    python bench/profile_summary.py bench/out/profile-pulse-ws-10000-w1-flood.txt [--top 25]

Prints the share of samples per leaf function (self time) and per function anywhere on the
stack (inclusive time), with file names shortened to the package.
"""
from __future__ import annotations

import argparse
import re
from collections import Counter

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _short(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match.group("file")
    for marker in ("site-packages/", "lib/python3", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match.group('func')} ({path})"


def load(path: str) -> tuple[Counter, Counter, int]:
    own: Counter = Counter()
    inclusive: Counter = Counter()
    total = 0
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
            total += n
            names = [_short(f) for f in frames]
            own[names[-1]] += n
            for name in set(names):
                inclusive[name] += n
    return own, inclusive, total


def summary(path: str, top: int = 25) -> str:
    own, inclusive, total = load(path)
    if not total:
        return f"{path}: no samples"
    lines = [f"{path}: {total} samples", "", "self time:"]
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
    args = parser.parse_args()
    for p in args.paths:
        print(summary(p, args.top))
        print()
