"""``peerbak install-service``: the daemon as a systemd service, started at boot.

The unit (:mod:`peerbak.core.unit`) runs this very interpreter (a venv's included) on the
home this command resolved. A system-wide service runs as the owner of that home: its
files are 0600 and 0700, so no other account could use it. Under ``sudo`` with no home
named, the home is the default one of the user who ran sudo, not root's.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from peerbak.cli.kit import emit, home_path, run
from peerbak.core.errors import InputError, NotFoundError, StorageError
from peerbak.core.unit import UNIT_NAME, unit_text


def _home() -> Path:
    from peerbak.adapters.home import Home, sudo_default_home

    named = click.get_current_context().find_root().obj
    path = (None if named else sudo_default_home()) or home_path()
    Home.open(path)  # refuses a home with no node: a service for it could only fail
    return path.resolve()


def _need_root(user_mode: bool, what: str) -> None:
    from peerbak.adapters.systemd import is_root

    if not user_mode and not is_root():
        raise StorageError(
            f"{what} the system-wide service needs root: run this peerbak with sudo, "
            "or add --user for a service of your own (systemctl --user)"
        )


def _unit(user_mode: bool) -> tuple[str, dict[str, Any]]:
    from peerbak.adapters.systemd import current_user, owner_of

    home = _home()
    python = os.path.abspath(sys.executable) if sys.executable else ""
    if not python:
        raise InputError("cannot tell which Python runs peerbak: the unit needs its path")
    user, group = (current_user(), "") if user_mode else owner_of(home)
    text = unit_text(python, str(home), user_mode=user_mode, user=user, group=group)
    return text, {"home": str(home), "user": user, "mode": "user" if user_mode else "system"}


def _install(user_mode: bool, start: bool, directory: Path) -> dict[str, Any]:
    from peerbak.adapters import systemd

    _need_root(user_mode, "installing")
    text, info = _unit(user_mode)
    path = directory / UNIT_NAME
    try:
        replaced = path.read_text() != text
    except FileNotFoundError:
        replaced = False
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc.strerror}") from None
    systemd.write_unit(path, text)
    systemd.systemctl(user_mode, "daemon-reload", unit_path=path)
    enable = ["enable", "--now"] if start else ["enable"]
    systemd.systemctl(user_mode, *enable, UNIT_NAME, unit_path=path)
    lingering = systemd.lingering(info["user"]) if user_mode else True
    return {**info, "unit": str(path), "started": start, "replaced": replaced, "linger": lingering}


def _uninstall(user_mode: bool, directory: Path) -> dict[str, Any]:
    from peerbak.adapters import systemd

    _need_root(user_mode, "removing")
    path = directory / UNIT_NAME
    if not path.exists():
        raise NotFoundError(f"no {path}: the service is not installed")
    systemd.systemctl(user_mode, "disable", "--now", UNIT_NAME, unit_path=path)
    systemd.remove_unit(path)
    systemd.systemctl(user_mode, "daemon-reload", unit_path=path)
    return {"unit": str(path), "removed": True, "mode": "user" if user_mode else "system"}


def _installed_text(info: dict[str, Any]) -> str:
    flag = " --user" if info["mode"] == "user" else ""
    lines = [f"Wrote {info['unit']}: the daemon of {info['home']}, as {info['user']}."]
    when = "at login" if flag else "at boot"
    lines.append(f"Enabled {when}" + (" and started." if info["started"] else "; not started."))
    if info["replaced"] and info["started"]:
        lines.append(
            f"A daemon already running keeps its old unit until: systemctl{flag} restart peerbak"
        )
    lines.append(f"Status: systemctl{flag} status peerbak    Log: journalctl{flag} -u peerbak")
    if not info["linger"]:
        lines.append(
            "It stops when you log out; to run it from boot without a login: "
            f"sudo loginctl enable-linger {info['user']}"
        )
    return "\n".join(lines)


@click.command("install-service")
@click.option("--user", "user_mode", is_flag=True, help="Your own service (systemctl --user).")
@click.option("--print", "show", is_flag=True, help="Write the unit to stdout; change nothing.")
@click.option("--uninstall", is_flag=True, help="Stop, disable and remove the service.")
@click.option("--no-start", is_flag=True, help="Enable the service without starting it now.")
@click.option("--unit-dir", type=click.Path(file_okay=False), hidden=True)
@click.option("--json", "as_json", is_flag=True)
def install_service(
    user_mode: bool,
    show: bool,
    uninstall: bool,
    no_start: bool,
    unit_dir: str | None,
    as_json: bool,
) -> None:
    """Run the daemon as a systemd service (Type=notify, watchdog, sandboxed).

    System-wide by default (root; the service runs as the home's owner, from boot);
    --user installs it in your own service manager instead.
    """
    from peerbak.adapters import systemd

    if uninstall and (show or no_start):
        raise click.UsageError("--uninstall takes neither --print nor --no-start")
    directory = Path(unit_dir) if unit_dir else systemd.unit_dir(user_mode)
    if show:
        click.echo(run(as_json, lambda: _unit(user_mode))[0], nl=False)
    elif uninstall:
        gone = run(as_json, lambda: _uninstall(user_mode, directory))
        emit(as_json, gone, f"Stopped, disabled and removed {gone['unit']}.")
    else:
        info = run(as_json, lambda: _install(user_mode, not no_start, directory))
        emit(as_json, info, _installed_text(info))


COMMANDS = (install_service,)
