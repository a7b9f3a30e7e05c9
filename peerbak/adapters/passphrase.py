"""Where the passphrase of a sealed node secret comes from, in restic's order.

``PEERBAK_PASSWORD_FILE`` (the file's contents), then ``PEERBAK_PASSWORD_COMMAND`` (its
standard output; split as a shell would, run without one), then, chosen by the caller,
a prompt on a terminal. One trailing newline is stripped, as ``echo`` and editors add it.
A passphrase is never logged nor put in an error message.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping
from typing import Final

from peerbak.core.errors import PassphraseError

ENV_FILE: Final = "PEERBAK_PASSWORD_FILE"
ENV_COMMAND: Final = "PEERBAK_PASSWORD_COMMAND"
#: A passphrase longer than this is a file named by mistake (a key, a log).
MAX_BYTES: Final = 4096

#: What to say when no source gave a passphrase.
NO_SOURCE: Final = (
    f"node.secret is sealed with a passphrase: set {ENV_FILE} (a file holding it) or "
    f"{ENV_COMMAND} (a command printing it), or run on a terminal to be asked"
)


def from_environment(environ: Mapping[str, str] | None = None) -> str | None:
    """The passphrase ``PEERBAK_PASSWORD_FILE`` or ``PEERBAK_PASSWORD_COMMAND`` gives (the
    file wins, as in restic), or None if neither is set."""
    env = os.environ if environ is None else environ
    path = env.get(ENV_FILE)
    if path:
        return read_file(path, ENV_FILE)
    command = env.get(ENV_COMMAND)
    if command:
        return run_command(command)
    return None


def environment_only() -> str:
    """A passphrase provider for what runs unattended: the environment, else an error."""
    got = from_environment()
    if got is None:
        raise PassphraseError(NO_SOURCE)
    return got


def read_file(path: str, what: str) -> str:
    """The passphrase in the file at ``path`` (``what`` names where the path came from)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 2)
    except OSError as exc:
        raise PassphraseError(f"{what}: cannot read {path}: {exc.strerror}") from None
    return _passphrase(raw, f"{what} ({path})")


def run_command(command: str) -> str:
    """The standard output of ``command``. Its standard input and error stay the
    terminal's, so a keyring helper can ask there; a failing command is an error."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise PassphraseError(f"{ENV_COMMAND} cannot be split into words: {exc}") from None
    if not argv:
        raise PassphraseError(f"{ENV_COMMAND} is blank")
    # The command's own words may hold a secret (`echo hunter2`): name its program only.
    try:
        done = subprocess.run(argv, stdout=subprocess.PIPE, check=False)  # noqa: S603
    except OSError as exc:
        raise PassphraseError(f"{ENV_COMMAND}: cannot run {argv[0]}: {exc.strerror}") from None
    if done.returncode != 0:
        raise PassphraseError(f"{ENV_COMMAND} ({argv[0]}) failed with exit code {done.returncode}")
    return _passphrase(done.stdout[: MAX_BYTES + 2], f"{ENV_COMMAND} ({argv[0]})")


def _passphrase(raw: bytes, source: str) -> str:
    if raw.endswith(b"\n"):
        raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
    if len(raw) > MAX_BYTES:
        raise PassphraseError(f"{source} gave more than {MAX_BYTES} bytes: not a passphrase")
    if not raw:
        raise PassphraseError(f"{source} gave an empty passphrase")
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise PassphraseError(f"{source} gave a passphrase that is not UTF-8") from None
