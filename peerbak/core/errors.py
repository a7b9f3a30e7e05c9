"""One root error, split by whose fault it is and whether trying again can help.

Every failure peerbak reports is a :class:`PeerbakError`; anything else escaping a
command is a bug. Each class says whether a retry may help (only
:class:`PeerUnavailable` does) and which exit code the CLI uses for it, so the
table in ``cli.py`` and the documentation are generated from one place.
"""

from __future__ import annotations

from typing import ClassVar


class PeerbakError(Exception):
    """Root of every error peerbak raises on purpose."""

    retryable: ClassVar[bool] = False
    exit_code: ClassVar[int] = 1
    #: Short machine-readable name, used in ``--json`` output and on the wire.
    code: ClassVar[str] = "error"


class ConfigError(PeerbakError):
    """The configuration or the node home is wrong; the user must fix it."""

    exit_code = 78
    code = "config"


class NoPool(ConfigError):
    """This node has joined no pool yet: nothing to back up to, nothing to report on."""

    code = "no_pool"


class InputError(PeerbakError):
    """Something the user typed or passed is malformed (a recovery key, a token, an id)."""

    exit_code = 64
    code = "input"


class PassphraseError(PeerbakError):
    """The node secret is sealed with a passphrase and could not be opened: the passphrase
    was wrong (or the file altered), or none could be had. 77 is sysexits' EX_NOPERM:
    scripts can tell "unlock it" apart from a broken configuration (78)."""

    exit_code = 77
    code = "passphrase"


class RemoteProtocolError(PeerbakError):
    """A peer sent something that breaks the protocol: oversized, malformed, out of turn."""

    exit_code = 76
    code = "protocol"


class IntegrityError(PeerbakError):
    """Bytes failed a check (AEAD tag, Merkle root, hash, header). Never retried as-is.

    ``obj`` names what was being checked (``chunk``, ``pack``, ``shard``, ...),
    ``ident`` its id in text form where known, ``check`` which check failed.
    """

    exit_code = 65
    code = "integrity"

    def __init__(self, message: str, *, obj: str = "", ident: str = "", check: str = "") -> None:
        super().__init__(message)
        self.obj = obj
        self.ident = ident
        self.check = check


class NotEnoughShares(PeerbakError):
    """Fewer than ``k`` good shards of a pack could be had: the pack cannot be rebuilt."""

    exit_code = 69
    code = "not-enough-shares"

    def __init__(self, message: str, *, pack: str = "", have: int = 0, need: int = 0) -> None:
        super().__init__(message)
        self.pack = pack
        self.have = have
        self.need = need


class Unavailable(PeerbakError):
    """Something the command needs is missing from this machine (libfuse for ``mount``):
    the user installs it; peerbak itself is fine (EX_UNAVAILABLE, as a missing service)."""

    exit_code = 69
    code = "unavailable"


class PeerUnavailable(PeerbakError):
    """A peer did not answer in time or could not be reached. The only retryable error."""

    retryable = True
    exit_code = 75
    code = "peer-unavailable"


class LedgerError(PeerbakError):
    """The local ledger (SQLite) is unreadable, from the future, or inconsistent."""

    exit_code = 74
    code = "ledger"


class LedgerDamaged(LedgerError):
    """The ledger file exists but cannot be read as a ledger: empty, truncated, not
    SQLite, failing SQLite's own check, or of no known schema. It is left untouched;
    ``peerbak recover --in-place`` moves it aside and rebuilds the ledger from the pool."""

    code = "ledger-damaged"

    def __init__(self, path: str, why: str) -> None:
        super().__init__(
            f"the ledger at {path} cannot be read: {why}. It is left as it is (keep it for "
            "inspection). To rebuild the ledger from the pool with this node's own secret, "
            "run `peerbak recover --in-place --from HOST:PORT` with a member's address"
        )
        self.path = path
        self.why = why


class StorageError(PeerbakError):
    """Local disk trouble: no space, permission denied, quota exceeded."""

    exit_code = 74
    code = "storage"


class NameRefused(StorageError):
    """The restore target's file system cannot hold a name the snapshot has (too long,
    or characters it does not allow): that entry is left out and named, the rest is
    restored, and the command exits 3 as restic does when it did not do everything."""

    exit_code = 3


class Unmatched(PeerbakError):
    """A pattern the user gave (restore's ``--include``) matched nothing: the rest was
    done, the command exits 3 and names the pattern."""

    exit_code = 3


class NotFoundError(PeerbakError):
    """The object asked for does not exist (a shard, a snapshot, a member)."""

    exit_code = 66
    code = "not-found"


class ConflictError(PeerbakError):
    """A write-once object already exists with different content."""

    exit_code = 65
    code = "conflict"


class Locked(PeerbakError):
    """Another process holds the lock (a second backup of the same node): try later."""

    exit_code = 75
    code = "locked"


class ServiceError(PeerbakError):
    """systemd could not be told about the service (no systemctl, or it refused): the
    message says what ran, what it said, and where the unit file is."""

    code = "service"


class HookFailed(PeerbakError):
    """A backup job's hook (before, after, on_error) or its command exited non-zero, could
    not be started, or ran past its timeout and was killed. 1, as an external program
    that failed (borgmatic's code for a failed hook too)."""

    exit_code = 1
    code = "hook-failed"


class DaemonUnavailable(PeerUnavailable):
    """This node's own daemon did not answer: meanwhile nothing is challenged or repaired."""

    code = "daemon-unavailable"


class Reported(PeerbakError):
    """A command finished, and its own output already says what went wrong: only the
    exit code is left to give. The CLI prints nothing more for it (``silent``), so a
    failure is never told twice and the command's output stays what scripts parse."""

    silent: ClassVar[bool] = True
    code = "reported"


class PartialBackup(Reported):
    """The snapshot was saved, but some source files could not be read (each was warned of)."""

    exit_code = 3
    code = "partial-backup"


class ChecksFailed(Reported):
    """A check or a storage challenge found data missing or damaged (each is listed)."""

    exit_code = 65
    code = "checks-failed"


class RepairStuck(Reported):
    """Some packs could not be repaired: too few good shards could be had (each is listed)."""

    exit_code = 69
    code = "repair-stuck"


class NotDelivered(Reported):
    """A notification did not reach every destination (each is listed): retry later."""

    exit_code = 75
    code = "not-delivered"


class NotReachable(Reported):
    """``peerbak reach``: no member could connect back to this node (each said why)."""

    exit_code = 75
    code = "not-reachable"


class PartialRestore(Reported):
    """Some files could not be restored (each error is listed). The exit code is that of
    the error that stopped them, so scripts see the same code as for that error alone."""

    code = "partial-restore"

    def __init__(self, message: str, *, exit_code: int) -> None:
        super().__init__(message)
        # Per instance: the code of the failure behind it, known only at run time.
        self.exit_code = exit_code  # type: ignore[misc]


class JobFailed(Reported):
    """``peerbak run``: a job failed (its output says which and why). The exit code is
    that of the error that failed it (1 for a hook, 75 for members out of reach, ...)."""

    code = "job-failed"

    def __init__(self, message: str, *, exit_code: int) -> None:
        super().__init__(message)
        # Per instance: the code of the failure behind it, known only at run time.
        self.exit_code = exit_code  # type: ignore[misc]


#: Every error class, for the exit-code table in the CLI and its documentation.
ALL_ERRORS: tuple[type[PeerbakError], ...] = (
    PeerbakError,
    ConfigError,
    NoPool,
    InputError,
    PassphraseError,
    RemoteProtocolError,
    IntegrityError,
    NotEnoughShares,
    Unavailable,
    PeerUnavailable,
    LedgerError,
    StorageError,
    NameRefused,
    Unmatched,
    NotFoundError,
    ConflictError,
    Locked,
    ServiceError,
    HookFailed,
)
