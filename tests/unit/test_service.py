"""``peerbak install-service``: the unit systemd itself accepts, and the systemctl calls.

systemd does not run in a container, so ``systemd-analyze verify`` judges the unit (it
loads it as the manager would, checks every key and that ExecStart's program exists),
and a ``systemctl`` first on ``$PATH`` records what the command asks of systemd.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from peerbak.core.errors import InputError
from peerbak.core.unit import TIMEOUT_STOP_SEC, WATCHDOG_SEC, quote, unit_text
from peerbak.node import daemon
from peerbak.node.compose import create_node

ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="system-wide installs need root")
PYTHON = os.path.abspath(sys.executable)
#: Characters systemd gives a meaning to, in the home's name: each must reach the daemon as is.
AWKWARD = "my node 100%$HOME"
NOBODY = 65534


def _node(root: Path) -> Path:
    create_node(root, "t", 0, listen="127.0.0.1", lan=False)
    return root


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return _node(tmp_path / AWKWARD)


def _peerbak(
    *args: str | Path, env: dict[str, str] | None = None, user: int | None = None
) -> subprocess.CompletedProcess[str]:
    prefix = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] if user else []
    return subprocess.run(
        [*prefix, PYTHON, "-m", "peerbak", *(str(a) for a in args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
        timeout=60,
    )


def _printed(home: Path, *flags: str) -> str:
    done = _peerbak("--home", home, "install-service", "--print", *flags)
    assert done.returncode == 0, done.stderr
    return done.stdout


# --- the text -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "systemd"),
    [
        ("/usr/bin/python3", "/usr/bin/python3"),
        ("/home/a b/x", '"/home/a b/x"'),
        ('/q"uo\\te', '"/q\\"uo\\\\te"'),
        ("/100%", '"/100%%"'),
        ("/a$b", '"/a$b"'),
    ],
)
def test_quoting(word: str, systemd: str) -> None:
    assert quote(word) == systemd
    assert quote(word, exec_line=True) == systemd.replace("$", "$$")


@pytest.mark.parametrize("bad", ["relative/home", "/new\nline", "/tab\there"])
def test_unwritable_paths_are_refused(bad: str) -> None:
    with pytest.raises(InputError):
        unit_text("/usr/bin/python3", bad, user_mode=True)


def test_system_and_user_units_differ_where_they_must() -> None:
    system = unit_text("/v/bin/python", "/h", user_mode=False, user="pi", group="pi")
    user = unit_text("/v/bin/python", "/h", user_mode=True)
    assert "User=pi\nGroup=pi\n" in system
    assert "User=" not in user
    assert "WantedBy=multi-user.target" in system
    assert "WantedBy=default.target" in user
    assert "PrivateUsers=yes" in user
    assert "PrivateUsers" not in system
    assert "ExecStart=/v/bin/python -m peerbak --home /h daemon\n" in system
    for line in ("Type=notify", "ProtectHome=read-only", "ReadWritePaths=/h", "UMask=0077"):
        assert f"\n{line}\n" in system
        assert f"\n{line}\n" in user
    with pytest.raises(InputError):
        unit_text("/v/bin/python", "/h", user_mode=False)  # a system unit without an account


def test_timeouts_fit_the_daemon(monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon pings at least twice per WatchdogSec and stops within TimeoutStopSec."""
    assert TIMEOUT_STOP_SEC >= 2 * daemon.STOP_GRACE
    monkeypatch.setenv("WATCHDOG_USEC", str(WATCHDOG_SEC * 1_000_000))
    pings: list[str] = []
    naps: list[float] = []

    async def nap(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 3:
            raise asyncio.CancelledError

    monkeypatch.setattr(asyncio, "sleep", nap)
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(daemon._watchdog(pings.append))  # type: ignore[arg-type]
    assert pings == ["WATCHDOG=1"] * 3
    assert max(naps) <= WATCHDOG_SEC / 2


# --- systemd's own judgement ----------------------------------------------------------------


def _verify(text: str, tmp: Path, *, user_mode: bool) -> str:
    """systemd-analyze's full dump of the unit, after failing on any word about it."""
    assert ANALYZE is not None
    unit_dir = tmp / ("user" if user_mode else "system")
    unit_dir.mkdir()
    (unit_dir / "peerbak.service").write_text(text)
    runtime = tmp / "runtime"  # a user manager wants one; no login gives it here
    runtime.mkdir(mode=0o700, exist_ok=True)
    argv = [ANALYZE, *(["--user"] if user_mode else []), "verify", "peerbak.service"]
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_LEVEL": "info"}
    done = subprocess.run(
        argv, cwd=unit_dir, env=env, capture_output=True, text=True, check=False, timeout=60
    )
    complaints = [line for line in (done.stdout + done.stderr).splitlines() if "peerbak" in line]
    assert complaints == [], done.stdout + done.stderr
    assert done.returncode == 0, done.stdout + done.stderr
    env["SYSTEMD_LOG_LEVEL"] = "debug"
    dumped = subprocess.run(
        argv, cwd=unit_dir, env=env, capture_output=True, text=True, check=True, timeout=60
    )
    return dumped.stdout + dumped.stderr


def _setting(dump: str, key: str) -> str:
    found = re.search(rf"^\s*{key}: (.*)$", dump, re.M)
    assert found, f"{key} not in systemd's dump"
    return found.group(1)


@needs_analyze
def test_system_unit_passes_systemd_analyze_verify(home: Path, tmp_path: Path) -> None:
    dump = _verify(_printed(home), tmp_path, user_mode=False)
    assert _setting(dump, "ReadWritePaths") == str(home)  # one path, spaces and % intact
    # The command line as systemd parsed it: `$$` (shown \$\$) becomes `$` when it runs.
    shown = str(home).replace("$", "\\$\\$")
    assert _setting(dump, "Command Line") == f'{PYTHON} -m peerbak --home "{shown}" daemon'

    assert _setting(dump, "Type") == "notify"
    assert _setting(dump, "WatchdogSec") == "1min"
    assert _setting(dump, "ProtectSystem") == "strict"
    assert _setting(dump, "ProtectHome") == "read-only"
    if os.geteuid() == 0:
        assert (_setting(dump, "User"), _setting(dump, "Group")) == ("root", "root")


@needs_analyze
def test_user_unit_passes_systemd_analyze_verify(home: Path, tmp_path: Path) -> None:
    dump = _verify(_printed(home, "--user"), tmp_path, user_mode=True)
    assert _setting(dump, "ReadWritePaths") == str(home)
    assert _setting(dump, "PrivateUsers") == "yes"
    assert re.search(r"^\s*User:", dump, re.M) is None  # the user manager's own user


def test_print_refuses_a_home_without_a_node(tmp_path: Path) -> None:
    done = _peerbak("--home", tmp_path / "none", "install-service", "--print")
    assert done.returncode == 78
    assert "run `peerbak init` first" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


# --- install and uninstall, with a recording systemctl --------------------------------------


@pytest.fixture
def fake_bin(tmp_path: Path) -> tuple[Path, Path]:
    """A directory with a ``systemctl`` that appends its arguments to a log, and the log."""
    bin_dir, log = tmp_path / "bin", tmp_path / "systemctl.log"
    bin_dir.mkdir()
    script = bin_dir / "systemctl"
    script.write_text('#!/bin/sh\nprintf "%s\\n" "$*" >> "$SYSTEMCTL_LOG"\n')
    script.chmod(0o755)
    return bin_dir, log


def _env(fake: tuple[Path, Path], **more: str) -> dict[str, str]:
    bin_dir, log = fake
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "SYSTEMCTL_LOG": str(log), **more}


def _calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


@needs_root
def test_system_install_and_uninstall(
    home: Path, tmp_path: Path, fake_bin: tuple[Path, Path]
) -> None:
    units = tmp_path / "units"
    env = _env(fake_bin)
    done = _peerbak("--home", home, "install-service", "--unit-dir", units, env=env)
    assert done.returncode == 0, done.stderr
    unit = units / "peerbak.service"
    assert stat.S_IMODE(unit.stat().st_mode) == 0o644
    assert unit.read_text() == _printed(home)
    assert [p.name for p in units.iterdir()] == ["peerbak.service"]  # no temp file left
    assert _calls(fake_bin[1]) == ["daemon-reload", "enable --now peerbak.service"]
    assert str(unit) in done.stdout
    assert "started" in done.stdout

    done = _peerbak("--home", home, "install-service", "--uninstall", "--unit-dir", units, env=env)
    assert done.returncode == 0, done.stderr
    assert not unit.exists()
    assert _calls(fake_bin[1])[2:] == ["disable --now peerbak.service", "daemon-reload"]

    again = _peerbak("install-service", "--uninstall", "--unit-dir", units, env=env)
    assert again.returncode == 66
    assert "not installed" in again.stderr


def test_user_install_without_start(
    home: Path, tmp_path: Path, fake_bin: tuple[Path, Path]
) -> None:
    env = _env(fake_bin, XDG_CONFIG_HOME=str(tmp_path / "config"))
    done = _peerbak("--home", home, "install-service", "--user", "--no-start", "--json", env=env)
    assert done.returncode == 0, done.stderr
    unit = tmp_path / "config" / "systemd" / "user" / "peerbak.service"
    assert unit.read_text() == _printed(home, "--user")
    assert stat.S_IMODE(unit.stat().st_mode) == 0o644
    assert _calls(fake_bin[1]) == ["--user daemon-reload", "--user enable peerbak.service"]
    assert '"started": false' in done.stdout


def test_a_failing_systemctl_is_one_clear_line(
    home: Path, tmp_path: Path, fake_bin: tuple[Path, Path]
) -> None:
    bin_dir, _ = fake_bin
    (bin_dir / "systemctl").write_text(
        '#!/bin/sh\necho "Failed to connect to bus: No medium found" >&2\nexit 1\n'
    )
    env = _env(fake_bin, XDG_CONFIG_HOME=str(tmp_path / "config"))
    done = _peerbak("--home", home, "install-service", "--user", env=env)
    unit = tmp_path / "config" / "systemd" / "user" / "peerbak.service"
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr
    assert "systemctl --user daemon-reload" in done.stderr
    assert "No medium found" in done.stderr
    assert str(unit) in done.stderr
    assert unit.exists()  # written, and named, so it can be started by hand


def test_no_systemctl_is_one_clear_line(home: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {"PATH": str(empty), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    done = _peerbak("--home", home, "install-service", "--user", env=env)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "systemctl is not on PATH" in done.stderr
    assert "peerbak.service" in done.stderr


@needs_root
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv is not installed")
def test_system_install_needs_root(fake_bin: tuple[Path, Path]) -> None:
    """As an ordinary user (nobody, owning its home): refused before anything is touched."""
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        root.chmod(0o755)  # nobody must reach its home
        node = _node(root / "home")
        for path in (node, *node.rglob("*")):
            os.chown(path, NOBODY, NOBODY)
        log = root / "systemctl.log"
        env = {**_env(fake_bin), "SYSTEMCTL_LOG": str(log)}
        before = Path("/etc/systemd/system/peerbak.service").exists()
        done = _peerbak("--home", node, "install-service", env=env, user=NOBODY)
        assert done.returncode == 74, done.stderr
        assert "needs root" in done.stderr
        assert "--user" in done.stderr
        assert "Traceback" not in done.stderr
        assert not log.exists()
        assert Path("/etc/systemd/system/peerbak.service").exists() == before
        printed = _peerbak("--home", node, "install-service", "--print", user=NOBODY)
        assert printed.returncode == 0, printed.stderr
        assert "\nUser=nobody\n" in printed.stdout


@needs_root
def test_under_sudo_the_home_is_the_invoking_users(tmp_path: Path) -> None:
    """sudo resets $HOME to root's: with no home named, the one meant is the sudoer's."""
    import pwd

    login = Path(pwd.getpwuid(NOBODY).pw_dir)
    env = {"SUDO_USER": pwd.getpwuid(NOBODY).pw_name, "PEERBAK_HOME": ""}
    done = _peerbak("install-service", "--print", env=env)
    assert done.returncode == 78
    assert f"no node at {login / '.local' / 'share' / 'peerbak'}:" in done.stderr
    named = _peerbak("--home", _node(tmp_path / "n"), "install-service", "--print", env=env)
    assert named.returncode == 0, named.stderr
