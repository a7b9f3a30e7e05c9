"""The node's home directory: its secret, config, ledger, holdings and runtime files.

::

    <home>/                  0700
      node.secret            0600  the 32-byte node secret: 64 hex digits, or sealed
                                   with a passphrase (peerbak.core.sealed)
      config.toml            0600
      ledger.sqlite          the ledger (WAL files beside it)
      recovery-kit.txt       0600  written once by init
      recovery-kit.png       0600  the recovery key as a QR code
      web.token              0600  the status page's login token (made at first use)
      run/                   0700  daemon.json (pid, port), daemon.sock, daemon.lock
      held/                  0700  shards held for others: held/<owner-id>/...

The secret is written with mode 0600 from its first byte (never chmod'ed after the
fact) and atomically, so no crash leaves a half-written key under its final name; a
passphrase set, changed or removed rewrites it the same way.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final, cast

import msgspec
import platformdirs

from peerbak.adapters.files import storage_error, write_private, write_private_once
from peerbak.adapters.passphrase import environment_only
from peerbak.adapters.store import trashed_manifests
from peerbak.core import sealed
from peerbak.core.config import Config, parse_config
from peerbak.core.errors import ConfigError, Locked, StorageError
from peerbak.core.ids import NodeId
from peerbak.core.textcode import KIT_KEY_HEADING
from peerbak.ports.workspace import Held

ENV_HOME: Final = "PEERBAK_HOME"
SECRET_FILE: Final = "node.secret"  # noqa: S105 - a file name
CONFIG_FILE: Final = "config.toml"
WEB_TOKEN_FILE: Final = "web.token"  # noqa: S105 - a file name
#: More than a sealed secret ever takes: a larger node.secret is not read whole.
SECRET_FILE_MAX: Final = 4096

#: Gives the passphrase of a sealed node secret when it is first needed (from the
#: environment, or by asking on a terminal: the caller decides).
Passphrase = Callable[[], str]


def locate(explicit: str | os.PathLike[str] | None) -> Path:
    """``--home`` wins, then ``$PEERBAK_HOME``, then the platform's data directory."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get(ENV_HOME)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("peerbak", appauthor=False))


def sudo_default_home() -> Path | None:
    """Under ``sudo`` with no home named: the default home of the user who ran sudo,
    which is what :func:`locate` finds in their own shell on Linux (sudo resets ``$HOME``
    to root's, so :func:`locate` would look in root's data directory instead)."""
    import pwd

    name = os.environ.get("SUDO_USER")
    if not name or os.geteuid() != 0 or os.environ.get(ENV_HOME):
        return None
    try:
        login = Path(pwd.getpwnam(name).pw_dir)
    except KeyError:
        return None
    return login / ".local" / "share" / "peerbak"


class DaemonState(msgspec.Struct, frozen=True):
    """What a running daemon tells the CLI (run/daemon.json)."""

    pid: int
    listen: str
    port: int
    started: float
    #: The status page's address and port (port 0: it is not served).
    web_listen: str = ""
    web_port: int = 0


class Home:
    """A node home on disk. ``repr`` shows the path only, never key material.

    ``passphrase`` is asked for only if node.secret is sealed, once: the secret is kept
    for the life of the object, so a command or a daemon asks once. Without one, the
    environment's ``PEERBAK_PASSWORD_FILE`` or ``PEERBAK_PASSWORD_COMMAND`` gives it.
    """

    def __init__(self, root: Path, passphrase: Passphrase | None = None) -> None:
        self.root = root
        self._passphrase = passphrase or environment_only
        self._secret: bytes | None = None

    def __repr__(self) -> str:
        return f"Home({str(self.root)!r})"

    @classmethod
    def create(
        cls,
        root: Path,
        secret: bytes,
        config_text: str,
        *,
        passphrase: str | None = None,
        opslimit: int = sealed.OPSLIMIT,
        memlimit: int = sealed.MEMLIMIT,
    ) -> Home:
        """A new node home; refuses to touch one that already holds a node. With a
        ``passphrase`` its secret is sealed from the first byte written."""
        home = cls(root)
        if (root / SECRET_FILE).exists():
            raise ConfigError(f"a node already exists at {root}: refusing to overwrite it")
        parse_config(config_text, str(root / CONFIG_FILE))
        content = _secret_text(secret, passphrase, opslimit, memlimit)
        try:
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
            root.chmod(0o700)
            for sub in (home.run_dir, home.held_dir):
                sub.mkdir(mode=0o700, exist_ok=True)
            write_private(root / CONFIG_FILE, config_text.encode())
            write_private(root / SECRET_FILE, content)
        except OSError as exc:
            raise storage_error(exc, f"cannot create a node home at {root}") from None
        return home

    @classmethod
    def open(cls, root: Path, passphrase: Passphrase | None = None) -> Home:
        """The home at ``root``, its node.secret checked: a plain one read, a sealed one
        parsed (its Argon2id limits bounded) but not opened until :meth:`secret`."""
        home = cls(root, passphrase)
        if not (root / SECRET_FILE).is_file():
            raise ConfigError(f"no node at {root}: run `peerbak init` first")
        stored = home._stored_secret()
        if isinstance(stored, bytes):
            home._secret = stored
        return home

    @property
    def secret_path(self) -> Path:
        return self.root / SECRET_FILE

    def is_sealed(self) -> bool:
        """Whether node.secret is sealed with a passphrase."""
        return not isinstance(self._stored_secret(), bytes)

    def secret(self) -> bytes:
        """The 32-byte node secret; a sealed one is opened with the passphrase, once."""
        if self._secret is None:
            stored = self._stored_secret()
            if isinstance(stored, bytes):
                self._secret = stored
            else:
                passphrase = self._passphrase()
                self._secret = sealed.unseal(stored, passphrase, str(self.secret_path))
        return self._secret

    def set_passphrase(
        self,
        passphrase: str | None,
        *,
        opslimit: int = sealed.OPSLIMIT,
        memlimit: int = sealed.MEMLIMIT,
    ) -> None:
        """Seal node.secret with ``passphrase`` (a new salt and nonce each time), or make
        it plain again with None. The secret itself, and so every key, stays the same;
        the file is replaced atomically, 0600 from its first byte."""
        content = _secret_text(self.secret(), passphrase, opslimit, memlimit)
        try:
            write_private(self.secret_path, content)
        except OSError as exc:
            raise storage_error(exc, f"cannot write {self.secret_path}") from None

    def _stored_secret(self) -> bytes | sealed.SealedSecret:
        """node.secret as it is on disk: the plain secret, or its sealed form."""
        path = self.secret_path
        try:
            with path.open("rb") as f:
                raw = f.read(SECRET_FILE_MAX + 1)
        except OSError as exc:
            raise storage_error(exc, f"cannot read {path}") from None
        text = raw.decode("ascii", errors="replace")
        if len(raw) > SECRET_FILE_MAX:
            raise ConfigError(f"{path} is damaged: it is larger than any node secret")
        if sealed.is_sealed(text):
            return sealed.parse_sealed(text, str(path))
        try:
            secret = bytes.fromhex(text.strip())
        except ValueError:
            secret = b""
        if len(secret) != 32:
            raise ConfigError(f"{path} is damaged: it must hold 64 hex digits")
        return secret

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILE

    def config_text(self) -> str:
        try:
            return self.config_path.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read {self.config_path}: {exc.strerror}") from None

    def config(self) -> Config:
        return parse_config(self.config_text(), str(self.config_path))

    @property
    def web_token_path(self) -> Path:
        return self.root / WEB_TOKEN_FILE

    def web_token(self) -> str:
        """The status page's login token, made (32 random bytes, URL-safe) the first time
        it is asked for, by the daemon or by ``peerbak web``, whichever comes first.
        Delete the file to change it: the daemon reads it at each request."""
        path = self.web_token_path
        try:
            if not path.exists():
                write_private_once(path, secrets.token_urlsafe(32).encode() + b"\n")
            token = path.read_text().strip()
        except OSError as exc:
            raise storage_error(exc, f"cannot read or write {path}") from None
        if len(token) < 16:
            raise ConfigError(f"{path} is damaged (too short a token): remove it")
        return token

    @property
    def ledger_path(self) -> Path:
        return self.root / "ledger.sqlite"

    def lock_daemon(self) -> int:
        """The one-daemon-per-home lock, held by the daemon and by what must not run
        beside it (an in-place recovery). Returns its descriptor; closing it unlocks."""
        fd, holder = _flock(self.run_dir / "daemon.lock")
        if holder is not None:
            os.close(fd)
            raise ConfigError(f"a daemon is already running for {self.root}")
        return fd

    @contextlib.contextmanager
    def lock(self, who: str, *, wait: float = 0.0) -> Iterator[None]:
        """The writer's lock (:meth:`peerbak.ports.workspace.Workspace.lock`).

        A second backup is refused at once (two at once is a mistake, as in restic).
        The daemon's repair holds the lock for a batch of packs at a time and is marked
        ``maintenance``: a command finding it waits up to ``wait`` seconds instead.
        """
        deadline = time.monotonic() + wait
        while True:
            fd, holder = _flock(self.run_dir / "backup.lock")
            if holder is None:
                break
            os.close(fd)
            if "maintenance" in holder and time.monotonic() < deadline:
                time.sleep(0.2)  # the daemon lets go between batches
                continue
            pid = holder[0] if holder else "?"
            kind = holder[1] if len(holder) > 1 else "backup"
            raise Locked(f"a {kind} of this node is running (pid {pid}); try again when it is done")
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {who}\n".encode(), 0)
            yield
        finally:
            os.close(fd)

    @property
    def scratch_dir(self) -> Path:
        return self.run_dir

    def held_for(self, owner: NodeId) -> Held:
        """What this node keeps for ``owner``, from its directory (live and trash)."""
        root = self.holder_dir(owner)
        total = 0
        for dirpath, _, files in os.walk(root):
            for f in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(dirpath, f)).st_size
        manifests, manifest_bytes = trashed_manifests(root / "trash")
        return Held(total, manifests, manifest_bytes)

    def manifest_received(self, owner: NodeId) -> float | None:
        """The mtime of ``owner``'s manifest here: the store writes each new one to a
        fresh file and renames it into place, so that is when it arrived."""
        try:
            return (self.holder_dir(owner) / "manifest").stat().st_mtime
        except OSError:
            return None

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def held_dir(self) -> Path:
        return self.root / "held"

    @property
    def control_socket(self) -> Path:
        return self.run_dir / "daemon.sock"

    @property
    def state_path(self) -> Path:
        return self.run_dir / "daemon.json"

    def holder_dir(self, owner: NodeId) -> Path:
        """Where ``owner``'s shards live: built from a parsed id, never from text."""
        return self.held_dir / owner.hex()

    def write_recovery_kit(self, key_text: str, node_id: NodeId, name: str) -> tuple[Path, Path]:
        import segno

        txt, png = self.root / "recovery-kit.txt", self.root / "recovery-kit.png"
        text = (
            "peerbak recovery kit\n"
            "====================\n\n"
            f"Node: {name or '(unnamed)'}  {node_id.hex()}\n\n"
            f"{KIT_KEY_HEADING}\n\n"
            f"    {key_text}\n\n"
            "With this key and the address of one friend in your pool, `peerbak recover`\n"
            "rebuilds this node (its identity, and then your backups) on a new machine.\n"
            "A few mistyped characters are corrected; write ? for one you cannot read.\n"
            "Keep this page away from the machine it protects. Anyone holding it can read\n"
            "your backups.\n"
        )
        try:
            write_private(txt, text.encode())
            qr = segno.make(key_text, error="m")
            buffer = io.BytesIO()
            qr.save(cast(Any, buffer), kind="png", scale=8, border=4)
            write_private(png, buffer.getvalue())
        except OSError as exc:
            raise storage_error(exc, f"cannot write the recovery kit in {self.root}") from None
        return txt, png

    def write_state(self, state: DaemonState) -> None:
        try:
            write_private(self.state_path, msgspec.json.encode(state))
        except OSError as exc:
            raise storage_error(exc, f"cannot write {self.state_path}") from None

    def read_state(self) -> DaemonState | None:
        try:
            raw = self.state_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise storage_error(exc, f"cannot read {self.state_path}") from None
        try:
            return msgspec.json.decode(raw, type=DaemonState)
        except msgspec.DecodeError:
            raise ConfigError(f"{self.state_path} is damaged: remove it") from None

    def running_state(self) -> DaemonState | None:
        """The state of a daemon that is still alive; a file left by a killed one is ignored."""
        state = self.read_state()
        if state is None:
            return None
        try:
            os.kill(state.pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:  # alive, under another user
            return state
        return state

    def clear_state(self) -> None:
        self.state_path.unlink(missing_ok=True)


def _secret_text(secret: bytes, passphrase: str | None, opslimit: int, memlimit: int) -> bytes:
    """node.secret's contents: 64 hex digits, or sealed under a fresh salt and nonce."""
    if passphrase is None:
        return secret.hex().encode() + b"\n"
    salt, nonce = os.urandom(sealed.SALT_LEN), os.urandom(sealed.NONCE_LEN)
    box = sealed.seal(
        secret, passphrase, salt=salt, nonce=nonce, opslimit=opslimit, memlimit=memlimit
    )
    return box.text().encode()


def _flock(path: Path) -> tuple[int, list[str] | None]:
    """Open ``path`` and try an exclusive flock (it dies with its process, kill -9 too):
    the descriptor, and None if taken, else the words its holder wrote in it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StorageError(f"cannot open {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return fd, os.pread(fd, 64, 0).decode(errors="replace").split()
    return fd, None
