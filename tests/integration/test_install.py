"""A fresh install, as a user makes it: the sdist and wheel that ``python -m build`` makes,
the wheel installed with the locked dependencies into a new virtual environment, and the
console script run as a subprocess. Its stderr must hold no warning and no traceback: a
user's cron mail and pipes see every line of it."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import peerbak

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _run(
    *args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        check=False,
        timeout=600,
    )


def _clean(stderr: str) -> None:
    """No warning of any kind and no traceback: only peerbak's own one-line messages."""
    lowered = stderr.lower()
    assert "warning" not in lowered, stderr
    assert "traceback" not in lowered, stderr


def test_built_wheel_installs_from_the_lock_and_runs_without_noise(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    # Without isolation the build backend is the locked hatchling already installed here;
    # `build` makes the sdist first and the wheel from the sdist, so both are exercised.
    built = _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, ROOT)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = dist.glob("peerbak-*.whl")
    (sdist,) = dist.glob("peerbak-*.tar.gz")
    assert wheel.name.startswith(f"peerbak-{peerbak.__version__}-")
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
    prefix = f"peerbak-{peerbak.__version__}"
    for needed in (
        "pyproject.toml",
        "peerbak/cli/main.py",
        "requirements/lock.txt",
        "protocol/wire.md",
    ):
        assert f"{prefix}/{needed}" in names, needed
    with zipfile.ZipFile(wheel) as whl:
        shipped = set(whl.namelist())
    for ring in ("core", "ports", "adapters", "services", "node", "cli", "tools"):
        assert f"peerbak/{ring}/__init__.py" in shipped, ring  # every ring, subpackages too
    assert "peerbak/adapters/ledger/__init__.py" in shipped

    venv = tmp_path / "venv"
    assert _run(sys.executable, "-m", "venv", venv).returncode == 0
    pip: list[str | Path] = [
        venv / "bin" / "python",
        "-m",
        "pip",
        "--disable-pip-version-check",
        "-q",
    ]
    locked = _run(
        *pip, "install", "--require-hashes", "--no-deps", "-r", ROOT / "requirements/lock.txt"
    )
    assert locked.returncode == 0, locked.stderr
    installed = _run(*pip, "install", "--no-deps", wheel)
    assert installed.returncode == 0, installed.stderr

    # The user's environment, without anything that would change what warnings show.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    exe = venv / "bin" / "peerbak"
    home = tmp_path / "home"

    version = _run(exe, "--version", env=env, cwd=tmp_path)
    assert version.returncode == 0
    assert version.stdout.strip() == f"peerbak, version {peerbak.__version__}"
    _clean(version.stderr)

    init = _run(exe, "--home", home, "init", "--port", "0", "--no-lan", env=env, cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    assert (home / "node.secret").stat().st_mode & 0o777 == 0o600
    _clean(init.stderr)

    # A node in no pool yet: one line that says so, exit 78, and nothing else.
    snapshots = _run(exe, "--home", home, "snapshots", env=env, cwd=tmp_path)
    assert snapshots.returncode == 78
    assert snapshots.stderr.strip().splitlines() == [
        "peerbak: this node is in no pool yet: `peerbak invite` a friend, or `peerbak join TOKEN`"
    ]
    _clean(snapshots.stderr)

    # The installed package is the wheel, not this checkout.
    code = "import peerbak; print(peerbak.__file__)"
    where = _run(venv / "bin" / "python", "-c", code, env=env, cwd=tmp_path)
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout
