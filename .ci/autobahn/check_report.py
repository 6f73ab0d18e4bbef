"""Read Autobahn|Testsuite's reports/servers/index.json: counts per behavior; exit 1 if any
case is other than OK, NON-STRICT or INFORMATIONAL (or its close behavior is not OK/INFORMATIONAL),
listing those cases."""
from __future__ import annotations

import json
import sys
from collections import Counter

PASSING = {"OK", "NON-STRICT", "INFORMATIONAL"}
PASSING_CLOSE = {"OK", "INFORMATIONAL"}


def case_key(case: str) -> tuple[int, ...]:
    return tuple(int(part) for part in case.split("."))


def main(path: str) -> int:
    with open(path) as f:
        index = json.load(f)
    bad = []
    for agent, cases in index.items():
        counts = Counter(result["behavior"] for result in cases.values())
        print(f"{agent}: {len(cases)} cases: "
              + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        for case in sorted(cases, key=case_key):
            result = cases[case]
            if result["behavior"] not in PASSING or result["behaviorClose"] not in PASSING_CLOSE:
                bad.append((agent, case, result["behavior"], result["behaviorClose"]))
    if not index:
        print("no results in", path)
        return 1
    for agent, case, behavior, close in bad:
        print(f"FAILED {agent} {case}: behavior={behavior} close={close}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "reports/servers/index.json"))
