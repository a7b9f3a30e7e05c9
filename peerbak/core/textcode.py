"""Typo-tolerant text codes: the recovery key and invite tokens.

People copy these by hand, from paper or a screen, so a few wrong characters must be
repaired rather than fatal, and more wrong characters than can be repaired must give a
clear :class:`~peerbak.core.errors.InputError`, never a wrong key. The bytes carry
Reed-Solomon parity (``reedsolo``, GF(2^8)) and are written as grouped lowercase base32.
A ``?`` marks a character the user cannot read; its bytes become erasures, which cost
half as much parity as unknown errors. The byte-for-byte format and the exact correction
guarantees are in ``protocol/recovery-key.md``.

Pure: no files, no clock, no randomness.
"""

from __future__ import annotations

import base64
import functools
import hmac
from dataclasses import dataclass, field
from typing import Final

import blake3
import reedsolo

from peerbak.core.errors import InputError

__all__ = [
    "ERASURE",
    "RECOVERY_KEY_CHARS",
    "RECOVERY_KEY_MAX_INPUT",
    "KIT_KEY_HEADING",
    "recovery_key_text",
    "RECOVERY_KEY_PARITY",
    "RECOVERY_KEY_VERSION",
    "SECRET_LEN",
    "Decoded",
    "RecoveryKey",
    "decode_recovery_key",
    "decode_text",
    "encode_recovery_key",
    "encode_text",
    "text_length",
]

# --------------------------------------------------------------------------- generic layer

#: RFC 4648 base32 alphabet, lowercase: what :func:`encode_text` writes.
_ALPHABET: Final = "abcdefghijklmnopqrstuvwxyz234567"
#: Characters outside the alphabet that people (or OCR) write for ones inside it.
_LOOKALIKES: Final = {"0": "o", "1": "l", "8": "b"}
#: Marks a character the user could not read.
ERASURE: Final = "?"
#: Group separators: ASCII '-' and the dashes word processors and PDFs substitute for it.
_SEPARATORS: Final = frozenset("-\u2010\u2011\u2012\u2013\u2014\u2212")
#: Largest Reed-Solomon codeword over GF(2^8).
_MAX_CODEWORD: Final = 255


def _build_values() -> dict[str, int]:
    values = {ch: i for i, ch in enumerate(_ALPHABET)}
    values.update({ch.upper(): i for i, ch in enumerate(_ALPHABET) if ch.isalpha()})
    values.update({alias: values[ch] for alias, ch in _LOOKALIKES.items()})
    return values


#: Accepted character -> its 5-bit value (case and look-alikes folded in).
_VALUES: Final = _build_values()


@dataclass(frozen=True, slots=True)
class Decoded:
    """A decoded text code. ``payload`` is kept out of ``repr`` since tokens are secrets."""

    payload: bytes = field(repr=False)
    #: Codeword bytes that were unreadable ('?') or wrong and have been repaired.
    corrected: int


def text_length(n_bytes: int) -> int:
    """Characters of unpadded base32 for ``n_bytes`` bytes (5 bits per character)."""
    return (8 * n_bytes + 4) // 5


@functools.lru_cache(maxsize=16)
def _codec(parity: int) -> reedsolo.RSCodec:
    """One codec per parity; building one computes the generator polynomial."""
    return reedsolo.RSCodec(parity)


def _check_parity(parity: int) -> None:
    # A bad parity is a bug in the caller, not bad user input.
    if not 1 <= parity < _MAX_CODEWORD:
        raise ValueError(f"parity must be in 1..{_MAX_CODEWORD - 1}, got {parity}")


def encode_text(payload: bytes, *, parity: int, group: int = 5) -> str:
    """Append ``parity`` Reed-Solomon bytes to ``payload`` and write it as grouped base32.

    The result is lowercase RFC 4648 base32 without padding, cut into groups of
    ``group`` characters joined by '-' (the last group may be shorter).
    """
    _check_parity(parity)
    if group < 1:
        raise ValueError(f"group must be positive, got {group}")
    if not payload:
        raise InputError("nothing to encode: the payload is empty")
    if len(payload) + parity > _MAX_CODEWORD:
        raise InputError(
            f"payload too long for a text code: {len(payload)} bytes + {parity} parity "
            f"> {_MAX_CODEWORD}"
        )
    codeword = bytes(_codec(parity).encode(bytes(payload)))
    chars = base64.b32encode(codeword).decode("ascii").rstrip("=").lower()
    return "-".join(chars[i : i + group] for i in range(0, len(chars), group))


def _normalise(text: str, group: int) -> tuple[list[int], list[int], list[int]]:
    """Map input to 5-bit values (-1 for '?'), erased character indices, typed group sizes.

    Whitespace and separators are dropped; case and look-alikes are folded. Anything
    else is refused with its position, so the user knows exactly where to look.
    """
    values: list[int] = []
    erased: list[int] = []
    groups: list[int] = [0]
    for pos, ch in enumerate(text, start=1):
        value = _VALUES.get(ch)
        if value is not None:
            values.append(value)
            groups[-1] += 1
        elif ch == ERASURE:
            erased.append(len(values))
            values.append(-1)
            groups[-1] += 1
        elif ch in _SEPARATORS or ch.isspace():
            if groups[-1]:
                groups.append(0)
        else:
            idx = len(values)
            raise InputError(
                f"unexpected character {ch!r} at position {pos} "
                f"(group {idx // group + 1}, character {idx % group + 1}); "
                f"type '{ERASURE}' in place of a character you cannot read"
            )
    if not groups[-1]:
        groups.pop()
    return values, erased, groups


def _group_hint(groups: list[int], group: int) -> str:
    """Point at the first typed group of the wrong size: where a character was lost or doubled."""
    if len(groups) < 2:
        return ""
    for i, size in enumerate(groups):
        last = i == len(groups) - 1
        if size > group or (size < group and not last):
            return f"; group {i + 1} has {size} characters instead of {group}"
    return ""


def _to_codeword(values: list[int], n_bytes: int) -> bytes:
    """Pack 5-bit values into ``n_bytes`` bytes, dropping the trailing pad bits."""
    acc = 0
    for v in values:
        acc = (acc << 5) | max(v, 0)
    return (acc >> (5 * len(values) - 8 * n_bytes)).to_bytes(n_bytes, "big")


def _erased_bytes(erased: list[int], n_bytes: int) -> list[int]:
    """Byte positions touched by the erased characters (a character spans 1 or 2 bytes)."""
    positions: set[int] = set()
    for idx in erased:
        first, last = (5 * idx) // 8, min((5 * idx + 4) // 8, n_bytes - 1)
        positions.update(range(first, last + 1))
    return sorted(positions)


def _too_many_typos() -> InputError:
    return InputError(
        "too many typos: the text cannot be corrected; compare it with the original "
        f"and type '{ERASURE}' for characters you cannot read"
    )


def decode_text(
    text: str,
    *,
    parity: int,
    max_chars: int,
    payload_len: int | None = None,
    group: int = 5,
) -> Decoded:
    """Normalise, repair and decode a text code from :func:`encode_text`.

    ``max_chars`` caps the raw input before any other work, so pasted garbage costs
    nothing. ``payload_len``, when known, pins the expected length so a missing or extra
    character is reported as such; ``group`` only improves that message. Every failure is
    an :class:`InputError`. Repairs are bounded-distance (2 * errors + erased bytes <=
    ``parity``), the radius within which the code vouches for the result. Pad bits in the
    last character are not covered by the code and are ignored.
    """
    _check_parity(parity)
    if not isinstance(text, str):
        raise InputError(f"a text code must be text, not {type(text).__name__}")
    if len(text) > max_chars:
        raise InputError(f"input too long: {len(text)} characters, at most {max_chars} accepted")
    values, erased, groups = _normalise(text, group)

    n = len(values)
    n_bytes = 5 * n // 8
    if payload_len is not None:
        expected = text_length(payload_len + parity)
        if n != expected:
            raise InputError(f"expected {expected} characters, got {n}{_group_hint(groups, group)}")
    elif n == 0:
        raise InputError("empty input: no characters to decode")
    elif text_length(n_bytes) != n or n_bytes <= parity or n_bytes > _MAX_CODEWORD:
        raise InputError(
            f"{n} characters cannot be a complete text code: a character may be missing "
            f"or doubled{_group_hint(groups, group)}"
        )

    received = _to_codeword(values, n_bytes)
    erase_pos = _erased_bytes(erased, n_bytes)
    if len(erase_pos) > parity:
        raise InputError(
            f"too many unreadable characters: {len(erased)} '{ERASURE}' hide {len(erase_pos)} "
            f"bytes and at most {parity} can be restored"
        )
    try:
        _, repaired, _ = _codec(parity).decode(received, erase_pos=erase_pos)
    except (reedsolo.ReedSolomonError, ZeroDivisionError, IndexError, ValueError) as exc:
        # reedsolo signals "beyond capacity" with ReedSolomonError (arithmetic errors are
        # caught too, should a corner case raise one); either way nothing can be repaired.
        raise _too_many_typos() from exc
    repaired = bytes(repaired)
    erased_set = set(erase_pos)
    errors = sum(1 for i in range(n_bytes) if i not in erased_set and repaired[i] != received[i])
    if 2 * errors + len(erase_pos) > parity:
        # reedsolo sometimes returns a codeword farther away than the code can vouch for;
        # accepting only bounded-distance repairs keeps miscorrection as rare as specified.
        raise _too_many_typos()
    corrected = errors + len(erase_pos)
    return Decoded(payload=repaired[: n_bytes - parity], corrected=corrected)


# ---------------------------------------------------------------------- recovery key layer

#: Format version, the first payload byte; bumped if the layout ever changes.
RECOVERY_KEY_VERSION: Final = 1
#: The node secret the recovery key carries.
SECRET_LEN: Final = 32
#: Reed-Solomon parity bytes: 7 unknown byte errors or 14 erased bytes.
RECOVERY_KEY_PARITY: Final = 14
_CHECK_LEN: Final = 3
_PAYLOAD_LEN: Final = 1 + SECRET_LEN + _CHECK_LEN
#: 1 + 32 + 3 + 14 = 50 bytes = 400 bits = exactly 80 base32 characters, 16 groups of 5.
RECOVERY_KEY_CHARS: Final = text_length(_PAYLOAD_LEN + RECOVERY_KEY_PARITY)
#: Raw input cap: room for separators, spaces between every character and line breaks.
RECOVERY_KEY_MAX_INPUT: Final = 512
_CHECK_CONTEXT: Final = "peerbak 2026-11-25 recovery-key check v1"


@dataclass(frozen=True, slots=True)
class RecoveryKey:
    """A decoded recovery key. ``secret`` is kept out of ``repr`` so it never lands in logs."""

    secret: bytes = field(repr=False)
    #: Codeword bytes repaired; > 0 means the user should be told the key had typos.
    corrected: int


def _check(version: int, secret: bytes) -> bytes:
    """Checksum that catches a Reed-Solomon miscorrection beyond the code's capacity."""
    digest: bytes = blake3.blake3(
        bytes([version]) + secret, derive_key_context=_CHECK_CONTEXT
    ).digest()
    return digest[:_CHECK_LEN]


def encode_recovery_key(secret: bytes) -> str:
    """Write the 32-byte node secret as the 80-character recovery key."""
    if not isinstance(secret, bytes | bytearray) or len(secret) != SECRET_LEN:
        size = len(secret) if isinstance(secret, bytes | bytearray) else type(secret).__name__
        raise InputError(f"a node secret is {SECRET_LEN} bytes, got {size}")
    secret = bytes(secret)
    payload = bytes([RECOVERY_KEY_VERSION]) + secret + _check(RECOVERY_KEY_VERSION, secret)
    return encode_text(payload, parity=RECOVERY_KEY_PARITY)


#: The line of the recovery kit (``init`` writes it) after which the key stands.
KIT_KEY_HEADING: Final = "Recovery key:"
#: Characters of a key file read at most: the kit is about 600.
KEY_FILE_MAX: Final = 64 * 1024


def recovery_key_text(text: str) -> str:
    """The recovery key in what the user gave: the key itself, or the recovery kit
    ``init`` wrote (the first line after "Recovery key:")."""
    if len(text) > KEY_FILE_MAX:
        raise InputError(f"a key file of {len(text)} characters is not a recovery kit")
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == KIT_KEY_HEADING:
            key = next((rest.strip() for rest in lines[i + 1 :] if rest.strip()), "")
            if not key:
                raise InputError("the recovery kit has no key after its heading")
            return key
    return text.strip()


def decode_recovery_key(text: str) -> RecoveryKey:
    """Read a recovery key as typed, repairing typos; refuse rather than guess.

    Beyond the code's capacity Reed-Solomon may "repair" towards another codeword; the
    version byte and the 24-bit check then refuse it, so a wrong secret is not returned.
    """
    decoded = decode_text(
        text,
        parity=RECOVERY_KEY_PARITY,
        max_chars=RECOVERY_KEY_MAX_INPUT,
        payload_len=_PAYLOAD_LEN,
    )
    payload = decoded.payload
    version = payload[0]
    if version != RECOVERY_KEY_VERSION:
        hint = " (or it has too many typos)" if decoded.corrected else ""
        raise InputError(
            f"recovery key format {version} is not known to this version of peerbak{hint}"
        )
    secret = payload[1 : 1 + SECRET_LEN]
    if not hmac.compare_digest(payload[1 + SECRET_LEN :], _check(version, secret)):
        raise InputError(
            "too many typos: the recovery key fails its check after correction; "
            "compare it with the original"
        )
    return RecoveryKey(secret=secret, corrected=decoded.corrected)
