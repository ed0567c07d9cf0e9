#!/usr/bin/env python3
"""Compare the installed packages with the committed lock; exit 1 on any difference.

Usage: ``python tools/lock_check.py LOCK`` with the venv's python (``make setup`` runs it
after installing). Prints one line per package whose installed version differs from its
pin, is missing, or is installed without a pin (the project itself excepted), then a
summary line. Reads ``pip freeze`` of the running interpreter; imports nothing else.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

_PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s\\;]+)")
#: Installed by the venv itself or the project, not by the lock.
_IGNORED = {"qcodes-stmtip"}


def _name(raw: str) -> str:
    return re.sub(r"[-_.]+", "-", raw).lower()


def pins(lock: Path) -> dict[str, str]:
    """``name → version`` of every ``name==version`` line of ``lock``."""
    out = {}
    for line in lock.read_text().splitlines():
        m = _PIN.match(line)
        if m:
            out[_name(m[1])] = m[2]
    return out


def installed() -> dict[str, str]:
    """``name → version`` of what ``pip freeze --all`` reports (editable installs skipped)."""
    text = subprocess.run([sys.executable, "-m", "pip", "freeze", "--all", "--exclude-editable"],
                          capture_output=True, text=True, check=True).stdout
    out = {}
    for line in text.splitlines():
        m = _PIN.match(line)
        if m:
            out[_name(m[1])] = m[2]
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: lock_check.py LOCK", file=sys.stderr)
        return 2
    lock = Path(argv[0])
    if not lock.is_file():
        print(f"lock_check: no lock file {lock}", file=sys.stderr)
        return 2
    want, have = pins(lock), installed()
    problems = []
    for name in sorted(set(want) | set(have)):
        if name in _IGNORED:
            continue
        if name not in have:
            problems.append(f"  {name}: locked {want[name]}, not installed")
        elif name not in want:
            problems.append(f"  {name}: installed {have[name]}, not in the lock")
        elif want[name] != have[name]:
            problems.append(f"  {name}: locked {want[name]}, installed {have[name]}")
    print("\n".join(problems) if problems else "", end="\n" if problems else "")
    print(f"lock_check: {len(want)} pinned, {len(have)} installed, {len(problems)} differ ({lock})")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
