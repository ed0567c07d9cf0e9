#!/usr/bin/env bash
# Drift canary (not part of `make test`): build a throw-away venv from today's index WITHOUT
# the committed lock, print what resolved against the lock, and run the suite. A failure here
# is a message about next month's fresh install, not a blocked submission: fix the project,
# then refresh the lock (`make lock`) in a deliberate commit whose suite passes.
#
# Usage: tools/canary.sh [highest|lowest-direct] [pytest args...]
#   highest        today's newest releases within pyproject's ranges (default)
#   lowest-direct  the lowest version pyproject allows for every direct dependency
#                  (checks the declared lower bounds)
# Env: PYTHON (a python3.12), CANARY_DIR (default: a fresh temporary folder, removed after).
set -uo pipefail
cd "$(dirname "$0")/.."
resolution="${1:-highest}"; shift || true
case "$resolution" in highest|lowest-direct) ;; *) echo "usage: $0 [highest|lowest-direct] [pytest args]"; exit 2;; esac
PYTHON="${PYTHON:-python3.12}"
lock="requirements/lock-py312-linux-$(uname -m).txt"
dir="${CANARY_DIR:-$(mktemp -d -t stmtip-canary.XXXXXX)}"
[ -z "${CANARY_DIR:-}" ] && trap 'rm -rf "$dir"' EXIT
echo "canary ($resolution) in $dir, $(date -u +%Y-%m-%dT%H:%MZ)"
"$PYTHON" -m venv "$dir/venv" || exit 1
"$dir/venv/bin/python" -m pip install -qq uv || exit 1
"$dir/venv/bin/uv" pip compile -q pyproject.toml requirements/build.in --extra all --extra test \
    --python-version 3.12 --resolution "$resolution" --index-url https://pypi.org/simple \
    -o "$dir/today.txt" || { echo "canary: today's index does not resolve pyproject's ranges"; exit 1; }
"$dir/venv/bin/python" -m pip install -qq --no-deps -r "$dir/today.txt" || exit 1
"$dir/venv/bin/python" -m pip install -qq --no-deps --no-build-isolation -e . || exit 1
"$dir/venv/bin/python" -m pip check || exit 1
echo "--- versions that differ from the lock ($lock): name lock -> today"
"$dir/venv/bin/python" - "$lock" "$dir/today.txt" <<'PY'
import re, sys
pin = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s\\;]+)")
def read(path):
    out = {}
    for line in open(path):
        m = pin.match(line)
        if m:
            out[m[1].lower().replace("_", "-")] = m[2]
    return out
lock, today = read(sys.argv[1]), read(sys.argv[2])
changed = [(n, lock.get(n, "-"), today.get(n, "-")) for n in sorted(set(lock) | set(today))
           if lock.get(n) != today.get(n)]
for name, old, new in changed:
    print(f"  {name} {old} -> {new}")
print(f"  ({len(changed)} of {len(today)} differ)")
PY
echo "--- suite on today's versions"
MPLBACKEND=Agg "$dir/venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
rc=$?
if [ $rc -eq 0 ]; then
    echo "canary: today's index passes; the lock can be refreshed with 'make lock'"
else
    echo "canary: today's index FAILS the suite (exit $rc); the committed lock still installs what passed"
fi
exit $rc
