"""The node secret sealed with a passphrase: Argon2id, then XSalsa20-Poly1305.

A laptop may be stolen powered off; sealed, its ``node.secret`` reveals nothing without
the passphrase, and Argon2id makes each guess cost memory and time. The file is text,
self-describing (``protocol/storage-format.md`` §2.1)::

    peerbak-sealed-secret v1
    kdf=argon2id
    opslimit=3
    memlimit=67108864
    salt=<16 bytes, hex>
    nonce=<24 bytes, hex>
    box=<48 bytes, hex: the 32-byte secret sealed, then its 16-byte tag>

Salt and nonce are parameters: this module draws no randomness of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import nacl.exceptions
import nacl.secret
from nacl.pwhash import argon2id

from peerbak.core.crypto import SECRET_LEN
from peerbak.core.errors import ConfigError, InputError, PassphraseError

HEADER: Final = "peerbak-sealed-secret v1"
#: What every sealed file starts with, whatever its version.
MAGIC: Final = "peerbak-sealed-secret"
KDF: Final = "argon2id"
SALT_LEN: Final = argon2id.SALTBYTES
NONCE_LEN: Final = nacl.secret.SecretBox.NONCE_SIZE
BOX_LEN: Final = SECRET_LEN + nacl.secret.SecretBox.MACBYTES

#: Defaults: RFC 9106's second recommended choice (t = 3 passes over m = 64 MiB), the one
#: it gives for machines short of memory. It fits beside the daemon on a Raspberry Pi
#: with 512 MiB, where libsodium's MODERATE (256 MiB) may not; about 0.1 s on a PC,
#: about a second on a Pi. Every guess costs an attacker the same.
OPSLIMIT: Final = 3
MEMLIMIT: Final = 64 * 1024 * 1024
#: The most a file may ask for: a hostile one must not make us allocate 100 GiB or spin
#: for hours. libsodium's SENSITIVE (4 passes, 1 GiB) is inside these bounds.
MAX_OPSLIMIT: Final = 10
MAX_MEMLIMIT: Final = 1024 * 1024 * 1024

_FIELDS: Final = ("kdf", "opslimit", "memlimit", "salt", "nonce", "box")


@dataclass(frozen=True, repr=False)
class SealedSecret:
    """The parsed file; ``repr`` shows the cost parameters only."""

    opslimit: int
    memlimit: int
    salt: bytes
    nonce: bytes
    box: bytes

    def text(self) -> str:
        """The file's contents."""
        return (
            f"{HEADER}\nkdf={KDF}\nopslimit={self.opslimit}\nmemlimit={self.memlimit}\n"
            f"salt={self.salt.hex()}\nnonce={self.nonce.hex()}\nbox={self.box.hex()}\n"
        )

    def __repr__(self) -> str:
        return f"SealedSecret(opslimit={self.opslimit}, memlimit={self.memlimit})"


def is_sealed(text: str) -> bool:
    """Whether ``text`` is a sealed secret (of any version), not 64 hex digits."""
    return text.startswith(MAGIC)


def limits_error(opslimit: int, memlimit: int) -> str | None:
    """Why these Argon2id limits are refused, or None."""
    if not argon2id.OPSLIMIT_MIN <= opslimit <= MAX_OPSLIMIT:
        return f"opslimit {opslimit} is outside {argon2id.OPSLIMIT_MIN}..{MAX_OPSLIMIT}"
    if not argon2id.MEMLIMIT_MIN <= memlimit <= MAX_MEMLIMIT:
        return (
            f"memlimit {memlimit} bytes is outside {argon2id.MEMLIMIT_MIN}..{MAX_MEMLIMIT} "
            f"({MAX_MEMLIMIT >> 20} MiB)"
        )
    return None


def _key(passphrase: str, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    try:
        key: bytes = argon2id.kdf(
            nacl.secret.SecretBox.KEY_SIZE,
            passphrase.encode(),
            salt,
            opslimit=opslimit,
            memlimit=memlimit,
        )
    except (MemoryError, nacl.exceptions.RuntimeError) as exc:
        raise ConfigError(f"Argon2id failed ({memlimit >> 20} MiB asked for): {exc}") from None
    return key


def seal(
    secret: bytes,
    passphrase: str,
    *,
    salt: bytes,
    nonce: bytes,
    opslimit: int = OPSLIMIT,
    memlimit: int = MEMLIMIT,
) -> SealedSecret:
    """``secret`` sealed under a key Argon2id derives from ``passphrase`` and ``salt``."""
    if len(secret) != SECRET_LEN:
        raise InputError(f"a node secret is {SECRET_LEN} bytes, got {len(secret)}")
    if not passphrase:
        raise InputError("an empty passphrase protects nothing")
    if len(salt) != SALT_LEN or len(nonce) != NONCE_LEN:
        raise InputError(f"sealing needs a {SALT_LEN}-byte salt and a {NONCE_LEN}-byte nonce")
    why = limits_error(opslimit, memlimit)
    if why is not None:
        raise InputError(f"Argon2id limits refused: {why}")
    box = nacl.secret.SecretBox(_key(passphrase, salt, opslimit, memlimit))
    return SealedSecret(opslimit, memlimit, salt, nonce, box.encrypt(secret, nonce).ciphertext)


def unseal(sealed: SealedSecret, passphrase: str, where: str = "node.secret") -> bytes:
    """The secret; a wrong passphrase (or an altered file: the two look alike) is a
    :class:`PassphraseError` that never repeats the passphrase."""
    key = _key(passphrase, sealed.salt, sealed.opslimit, sealed.memlimit)
    try:
        secret = nacl.secret.SecretBox(key).decrypt(sealed.box, sealed.nonce)
    except nacl.exceptions.CryptoError:
        raise PassphraseError(f"wrong passphrase for {where} (or the file was altered)") from None
    if len(secret) != SECRET_LEN:  # authenticated, so only a writer's bug gets here
        raise ConfigError(f"{where} holds a secret of {len(secret)} bytes, not {SECRET_LEN}")
    return bytes(secret)


def parse_sealed(text: str, where: str = "node.secret") -> SealedSecret:
    """The fields of a sealed file, checked before any work is done for them: a damaged
    file, or one asking Argon2id for more than :data:`MAX_MEMLIMIT`, is a ConfigError."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != HEADER:
        first = lines[0].strip()[:40] if lines else ""
        if first.startswith(MAGIC):
            raise ConfigError(f"{where} is sealed as {first!r}: a newer peerbak wrote it")
        raise ConfigError(f"{where} is damaged: it does not start with {HEADER!r}")
    fields: dict[str, str] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or name not in _FIELDS or name in fields:
            raise ConfigError(f"{where} is damaged: line {number} is not one field of {_FIELDS}")
        fields[name] = value.strip()
    missing = [name for name in _FIELDS if name not in fields]
    if missing:
        raise ConfigError(f"{where} is damaged: no {', '.join(missing)}")
    if fields["kdf"] != KDF:
        raise ConfigError(f"{where}: unknown kdf {fields['kdf'][:20]!r} (only {KDF})")
    opslimit, memlimit = (_number(fields[n], n, where) for n in ("opslimit", "memlimit"))
    why = limits_error(opslimit, memlimit)
    if why is not None:
        raise ConfigError(f"{where} is refused: Argon2id {why} (peerbak never writes that)")
    salt, nonce, box = (
        _hex(fields[n], size, n, where)
        for n, size in (("salt", SALT_LEN), ("nonce", NONCE_LEN), ("box", BOX_LEN))
    )
    return SealedSecret(opslimit, memlimit, salt, nonce, box)


def _number(text: str, name: str, where: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 20:
        raise ConfigError(f"{where} is damaged: {name} is not a number")
    return int(text)


def _hex(text: str, size: int, name: str, where: str) -> bytes:
    try:
        value = bytes.fromhex(text)
    except ValueError:
        value = b""
    if len(value) != size:
        raise ConfigError(f"{where} is damaged: {name} must be {size * 2} hex digits")
    return value
