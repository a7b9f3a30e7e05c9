"""The sealed node secret: round trip, wrong passphrase, tampering, hostile limits."""

from __future__ import annotations

import pytest
from nacl.pwhash import argon2id

from peerbak.core import sealed
from peerbak.core.errors import ConfigError, InputError, PassphraseError

SECRET = bytes(range(32))
SALT = bytes(range(16))
NONCE = bytes(range(100, 124))
#: Argon2id at its smallest, so the suite stays fast; the defaults are tested once.
FAST = {"opslimit": argon2id.OPSLIMIT_MIN, "memlimit": argon2id.MEMLIMIT_MIN}


def _sealed(passphrase: str = "correct horse") -> sealed.SealedSecret:
    return sealed.seal(SECRET, passphrase, salt=SALT, nonce=NONCE, **FAST)


def test_round_trip_through_the_text_form() -> None:
    text = _sealed().text()
    assert text.startswith("peerbak-sealed-secret v1\n")
    assert sealed.is_sealed(text)
    assert SECRET.hex() not in text
    parsed = sealed.parse_sealed(text)
    assert parsed == _sealed()
    assert sealed.unseal(parsed, "correct horse") == SECRET


def test_sealing_is_a_function_of_its_inputs() -> None:
    assert _sealed().text() == _sealed().text()
    other_salt = sealed.seal(SECRET, "correct horse", salt=bytes(16), nonce=NONCE, **FAST)
    assert other_salt.box != _sealed().box


def test_the_default_parameters_round_trip() -> None:
    box = sealed.seal(SECRET, "pw", salt=SALT, nonce=NONCE)
    assert (box.opslimit, box.memlimit) == (3, 64 * 1024 * 1024)
    assert "memlimit=67108864" in box.text()
    assert sealed.unseal(sealed.parse_sealed(box.text()), "pw") == SECRET


def test_a_wrong_passphrase_is_a_passphrase_error_that_keeps_it_secret() -> None:
    with pytest.raises(PassphraseError, match=r"wrong passphrase for /h/node\.secret") as caught:
        sealed.unseal(_sealed("right"), "wrong guess", "/h/node.secret")
    assert "wrong guess" not in str(caught.value)
    assert caught.value.exit_code == 77


@pytest.mark.parametrize("field", ["salt", "nonce", "box"])
def test_a_flipped_bit_anywhere_is_refused(field: str) -> None:
    good = _sealed()
    value = bytearray(getattr(good, field))
    value[0] ^= 1
    text = good.text().replace(getattr(good, field).hex(), bytes(value).hex())
    with pytest.raises(PassphraseError, match="or the file was altered"):
        sealed.unseal(sealed.parse_sealed(text), "correct horse")


def test_changed_cost_parameters_are_refused() -> None:
    text = _sealed().text().replace("opslimit=1\n", "opslimit=2\n")
    with pytest.raises(PassphraseError):
        sealed.unseal(sealed.parse_sealed(text), "correct horse")


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("memlimit", str(100 * 1024**3), "memlimit 107374182400 bytes is outside"),
        ("memlimit", str(sealed.MAX_MEMLIMIT + 1024), "is outside"),
        ("memlimit", "1024", "is outside"),
        ("opslimit", "4294967295", "opslimit 4294967295 is outside"),
        ("opslimit", "0", "is outside"),
    ],
)
def test_hostile_limits_are_refused_before_any_work(field: str, value: str, why: str) -> None:
    lines = [
        f"{field}={value}" if line.startswith(f"{field}=") else line
        for line in _sealed().text().splitlines()
    ]
    with pytest.raises(ConfigError, match=why):
        sealed.parse_sealed("\n".join(lines), "node.secret")


def test_the_largest_accepted_limits_are_libsodiums_sensitive_ones() -> None:
    assert sealed.limits_error(argon2id.OPSLIMIT_SENSITIVE, argon2id.MEMLIMIT_SENSITIVE) is None
    assert sealed.limits_error(sealed.MAX_OPSLIMIT + 1, sealed.MEMLIMIT) is not None


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "does not start with"),
        ("peerbak-sealed-secret v2\nkdf=argon2id\n", "a newer peerbak wrote it"),
        ("peerbak-sealed-secret v1\nkdf=argon2id\n", "no opslimit, memlimit, salt"),
        ("peerbak-sealed-secret v1\nkdf\n", "line 2 is not one field"),
        ("peerbak-sealed-secret v1\nsalt=00\nsalt=00\n", "line 3 is not one field"),
        ("peerbak-sealed-secret v1\ncolour=blue\n", "line 2 is not one field"),
    ],
)
def test_damaged_files_say_what_is_wrong(text: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        sealed.parse_sealed(text)


@pytest.mark.parametrize(
    ("old", "new", "why"),
    [
        ("kdf=argon2id", "kdf=argon2i", "unknown kdf"),
        ("opslimit=1", "opslimit=-1", "opslimit is not a number"),
        ("opslimit=1", "opslimit=1e3", "opslimit is not a number"),
        ("salt=" + SALT.hex(), "salt=" + SALT.hex()[:-2], "salt must be 32 hex digits"),
        ("nonce=" + NONCE.hex(), "nonce=zz", "nonce must be 48 hex digits"),
    ],
)
def test_damaged_fields_are_named(old: str, new: str, why: str) -> None:
    text = _sealed().text()
    assert old in text
    with pytest.raises(ConfigError, match=why):
        sealed.parse_sealed(text.replace(old, new))


def test_sealing_refuses_what_it_would_not_read() -> None:
    with pytest.raises(InputError, match="empty passphrase"):
        sealed.seal(SECRET, "", salt=SALT, nonce=NONCE, **FAST)
    with pytest.raises(InputError, match="32 bytes"):
        sealed.seal(SECRET[:31], "pw", salt=SALT, nonce=NONCE, **FAST)
    with pytest.raises(InputError, match="limits refused"):
        sealed.seal(SECRET, "pw", salt=SALT, nonce=NONCE, opslimit=1, memlimit=2 * 1024**3)
    with pytest.raises(InputError, match="salt"):
        sealed.seal(SECRET, "pw", salt=SALT[:8], nonce=NONCE, **FAST)


def test_repr_shows_no_key_material() -> None:
    box = _sealed()
    assert repr(box) == "SealedSecret(opslimit=1, memlimit=8192)"


def test_plain_text_is_not_taken_for_sealed() -> None:
    assert not sealed.is_sealed(SECRET.hex() + "\n")
