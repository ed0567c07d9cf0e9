"""Issue 26 class 2: peak RSS of refusing a bundle member that inflates to 2 GiB.

Copies the shipped hsi100 bundle, replaces the largest ``.npy`` entry of its logreg member by
zeros of shape (4, 2**26) float64 (2 GiB inflated, a few MB deflated), rewrites the member's
hash and on-disk size to match (a consistent attacker), and loads the bundle in a fresh child
process, printing the child's peak RSS and the refusal. Cases: the manifest keeps the member's
old ``inflated_size`` (the entry is refused against it) and the manifest declares nothing (the
hard cap, ``MAX_MEMBER_INFLATED``). ``--bundle-module FILE`` loads ``bundle.py`` from another
copy (before issue 26: ``git show 9a8707a:qcodes_stmtip/classify/bundle.py > /tmp/bundle_before.py``).

    .venv/bin/python benchmarks/bundle_bomb.py
    .venv/bin/python benchmarks/bundle_bomb.py --bundle-module /tmp/bundle_before.py --cases undeclared
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from qcodes_stmtip.classify.bundle import DEFAULT_BUNDLES

CHILD = r"""
import importlib.util, resource, sys, time
path, module = sys.argv[1], sys.argv[2]
if module:
    spec = importlib.util.spec_from_file_location("qcodes_stmtip.classify.bundle_under_test", module)
    bundle = importlib.util.module_from_spec(spec); sys.modules[spec.name] = bundle; spec.loader.exec_module(bundle)
else:
    from qcodes_stmtip.classify import bundle
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
try:
    bundle.load_bundle(path)
    outcome = "LOADED"
except Exception as exc:
    outcome = f"{type(exc).__name__}: {str(exc)[-160:]}"
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(f"{base / 1024:.0f}\t{peak / 1024:.0f}\t{time.perf_counter() - t:.2f}\t{outcome}")
"""


def build(dst: Path, declared: bool) -> None:
    shutil.copytree(DEFAULT_BUNDLES / "hsi100", dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    entry = next(e for e in manifest["members"] if e["architecture"] == "logreg")
    file = dst / entry["file"]
    with zipfile.ZipFile(file) as zf:
        entries = {i.filename: zf.read(i) for i in zf.infolist()}
    big = max((n for n in entries if n.endswith(".npy")), key=lambda n: len(entries[n]))
    shape = (4, 1 << 26)  # 2 GiB of float64
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 1)))
    header["shape"] = shape
    file.unlink()
    with zipfile.ZipFile(file, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, data in entries.items():
            if name != big:
                zf.writestr(name, data)
                continue
            with zf.open(name, "w", force_zip64=True) as out:
                np.lib.format.write_array_header_1_0(out, header)
                chunk = bytes(64 << 20)
                for _ in range(32):
                    out.write(chunk)
    entry["sha256"] = hashlib.sha256(file.read_bytes()).hexdigest()
    if declared:
        entry["size"] = file.stat().st_size  # inflated_size keeps the member's honest value
    else:
        for e in [*manifest["members"], manifest.get("tip_change") or {}]:
            for key in ("size", "inflated_size", "shapes"):
                e.pop(key, None)
        manifest.pop("partial", None)
    (dst / "manifest.json").write_text(json.dumps(manifest, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle-module", default="", help="bundle.py to load instead of the package's")
    parser.add_argument("--cases", nargs="+", default=["declared", "undeclared"],
                        choices=["declared", "undeclared"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases:
            root = Path(tmp) / case
            t = time.perf_counter()
            build(root, declared=case == "declared")
            member = max((root / "members").glob("*logreg*"), key=lambda p: p.stat().st_size)
            print(f"{case}: built in {time.perf_counter() - t:.1f} s; member {member.stat().st_size / 1e6:.1f} MB "
                  "on disk, 2 GiB inflated")
            out = subprocess.run([sys.executable, "-c", CHILD, str(root), args.bundle_module],
                                 capture_output=True, text=True, timeout=1800)
            line = (out.stdout.strip().splitlines() or ["?\t?\t?\t" + out.stderr.strip()[-300:]])[-1]
            base, peak, seconds, outcome = line.split("\t", 3)
            print(f"{case}: peak RSS {peak} MiB (after imports {base} MiB), {seconds} s -> {outcome}")


if __name__ == "__main__":
    main()
