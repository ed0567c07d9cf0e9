"""The wheel works outside the checkout, the lab's simulation YAMLs included."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_runs_the_simulated_lab_outside_the_checkout(tmp_path: Path) -> None:
    src = tmp_path / "src"  # build from a copy: nothing is written into the checkout
    shutil.copytree(REPO / "qcodes_stmtip", src / "qcodes_stmtip",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("qcodes_stmtip-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "qcodes_stmtip/lab/sim_yaml/attocube_anc300.sim.yaml" in names
    assert "qcodes_stmtip/lab/sim_yaml/simulated_lab.station.yaml" in names
    assert any(n.startswith("qcodes_stmtip/classify/bundles/hsi100/") for n in names)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    run = tmp_path / "elsewhere"
    run.mkdir()
    code = (f"import sys; sys.path.insert(0, {str(site)!r})\n"
            "import qcodes_stmtip\n"
            f"assert qcodes_stmtip.__file__.startswith({str(site)!r}), qcodes_stmtip.__file__\n"
            "from qcodes_stmtip.cli import main\n"
            "sys.exit(main(['lab', 'demo', '--pixels', '32']))\n")
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                         timeout=300, cwd=run)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "pulse 2 V" in out.stdout and "temperature:" in out.stdout


def _lock() -> Path:
    import platform

    return REPO / "requirements" / f"lock-py312-linux-{platform.machine()}.txt"


def test_the_lock_pins_every_declared_dependency_with_hashes() -> None:
    """Every dependency pyproject declares (base, extras, build tools) is pinned exactly, with
    sha256 hashes, so `make setup` installs from the lock without resolving anything."""
    import re
    import tomllib

    lock = _lock()
    if not lock.is_file():
        pytest.skip(f"no lock for this platform ({lock.name}); make setup installs from ranges")
    text = lock.read_text()
    pinned = {re.sub(r"[-_.]+", "-", m[1]).lower()
              for m in re.finditer(r"^([A-Za-z0-9_.\-]+)==\S+ \\$", text, re.M)}
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[-1])
    unhashed = [b.split("==")[0] for b in blocks if "==" in b and "--hash=sha256:" not in b]
    assert unhashed == []
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for reqs in project["optional-dependencies"].values():
        declared += [r for r in reqs if not r.startswith("qcodes-stmtip[")]
    declared += [line for line in (REPO / "requirements" / "build.in").read_text().splitlines()
                 if line and not line.startswith("#")]
    names = set()
    for req in declared:
        if "platform_machine != 'x86_64'" in req and "x86_64" in lock.name:
            continue  # the other platform's TensorFlow wheel
        names.add(re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.\-]+", req)[0]).lower())
    assert names - pinned == set()


def test_lock_check_reports_differences(tmp_path: Path) -> None:
    """tools/lock_check.py (run by `make setup`) names a package whose pin the venv does not hold."""
    lock = tmp_path / "lock.txt"
    lock.write_text("pytest==0.0.1 \\\n    --hash=sha256:00\nnot-a-real-package-xyz==1.0 \\\n")
    out = subprocess.run([sys.executable, str(REPO / "tools" / "lock_check.py"), str(lock)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert "pytest: locked 0.0.1, installed " in out.stdout
    assert "not-a-real-package-xyz: locked 1.0, not installed" in out.stdout
