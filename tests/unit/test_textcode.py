"""Recovery keys and text codes: typos are repaired, too many are refused, never misread."""

from __future__ import annotations

import base64
import contextlib
import random
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerbak.adapters.home import Home
from peerbak.core.crypto import NodeKeys
from peerbak.core.errors import InputError, PeerbakError
from peerbak.core.textcode import (
    KEY_FILE_MAX,
    RECOVERY_KEY_CHARS,
    RECOVERY_KEY_MAX_INPUT,
    RECOVERY_KEY_PARITY,
    RECOVERY_KEY_VERSION,
    SECRET_LEN,
    Decoded,
    RecoveryKey,
    _check,
    _codec,
    _erased_bytes,
    _to_codeword,
    decode_recovery_key,
    decode_text,
    encode_recovery_key,
    encode_text,
    recovery_key_text,
    text_length,
)

ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
WORKED_SECRET = bytes(range(32))
WORKED_KEY = (
    "aeaac-aqdaq-cqmby-ibefa-wdanb-yhrae-iscmk-bkfqx-"
    "damru-gy4du-pb6yo-y2kwh-xsltu-roet7-5ijat-qtw24"
)
#: Characters 1 and 4 of every 8-character block straddle two bytes, and no two of them
#: share a byte: marking these unreadable costs the most parity per character.
STRADDLING = [8 * block + off for block in range(10) for off in (1, 4)]

secrets_st = st.binary(min_size=SECRET_LEN, max_size=SECRET_LEN)
fast = settings(deadline=None, max_examples=150)


def bare(key: str) -> list[str]:
    return list(key.replace("-", ""))


def grouped(chars: list[str], group: int = 5) -> str:
    s = "".join(chars)
    return "-".join(s[i : i + group] for i in range(0, len(s), group))


def substitute(chars: list[str], pos: int, delta: int) -> None:
    """Replace the character at ``pos`` by a different alphabet character."""
    chars[pos] = ALPHABET[(ALPHABET.index(chars[pos]) + delta) % 32]


def wrong_bytes(secret: bytes, chars: list[str]) -> int:
    """How many of the 50 codeword bytes the typed characters get wrong."""
    right = _to_codeword([ALPHABET.index(c) for c in bare(encode_recovery_key(secret))], 50)
    typed = _to_codeword([ALPHABET.index(c) for c in chars], 50)
    return sum(a != b for a, b in zip(right, typed, strict=True))


def bytes_touched(char_positions: list[int] | range, n_bytes: int = 50) -> int:
    return len(_erased_bytes(list(char_positions), n_bytes))


# ------------------------------------------------------------------ recovery key: shape


def test_worked_example_matches_spec() -> None:
    assert encode_recovery_key(WORKED_SECRET) == WORKED_KEY
    assert decode_recovery_key(WORKED_KEY) == RecoveryKey(secret=WORKED_SECRET, corrected=0)


@fast
@given(secrets_st)
def test_round_trip_and_shape(secret: bytes) -> None:
    key = encode_recovery_key(secret)
    assert len(key) == RECOVERY_KEY_CHARS + 15 == 95
    groups = key.split("-")
    assert len(groups) == 16
    assert all(len(g) == 5 and set(g) <= set(ALPHABET) for g in groups)
    assert decode_recovery_key(key) == RecoveryKey(secret=secret, corrected=0)


def test_layout_is_version_secret_check_parity() -> None:
    key = encode_recovery_key(WORKED_SECRET)
    raw = base64.b32decode(key.replace("-", "").upper())
    assert len(raw) == 50
    assert raw[0] == RECOVERY_KEY_VERSION
    assert raw[1:33] == WORKED_SECRET
    assert raw[33:36] == _check(1, WORKED_SECRET)


@pytest.mark.parametrize("bad", [b"", bytes(31), bytes(33), "x" * 32, None])
def test_encode_refuses_wrong_secret(bad: object) -> None:
    with pytest.raises(InputError, match="32 bytes"):
        encode_recovery_key(bad)  # type: ignore[arg-type]


def test_repr_never_shows_the_secret() -> None:
    key = decode_recovery_key(WORKED_KEY)
    assert WORKED_SECRET.hex() not in repr(key)
    assert "secret" not in repr(key)
    assert "payload" not in repr(Decoded(payload=b"token", corrected=0))


# ------------------------------------------------------------------ normalisation


def test_normalisation_case_spaces_dashes_lookalikes() -> None:
    plain = WORKED_KEY.replace("-", "")
    variants = [
        WORKED_KEY.upper(),
        plain,
        " ".join(WORKED_KEY.split("-")),
        "\n".join("-".join(WORKED_KEY.split("-")[i : i + 4]) for i in range(0, 16, 4)),
        "  " + " ".join(plain) + "\t\n",
        WORKED_KEY.replace("-", "\u2013"),  # en dash from a word processor
        WORKED_KEY.replace("o", "0").replace("l", "1").replace("b", "8"),
        WORKED_KEY.upper().replace("O", "0").replace("L", "1").replace("B", "8"),
    ]
    for text in variants:
        assert decode_recovery_key(text) == RecoveryKey(secret=WORKED_SECRET, corrected=0), text


@pytest.mark.parametrize("ch", ["9", "!", "é", "\x00", "_", "="])
def test_foreign_character_is_named_with_its_position(ch: str) -> None:
    text = WORKED_KEY[:13] + ch + WORKED_KEY[14:]  # position 14 = group 3, character 2
    with pytest.raises(InputError, match=r"position 14 \(group 3, character 2\)") as info:
        decode_recovery_key(text)
    assert repr(ch) in str(info.value)


def test_wrong_length_says_what_was_expected() -> None:
    short = WORKED_KEY[:12] + WORKED_KEY[13:]  # group 3 lost a character
    with pytest.raises(InputError, match="expected 80 characters, got 79; group 3 has 4"):
        decode_recovery_key(short)
    with pytest.raises(InputError, match="expected 80 characters, got 81"):
        decode_recovery_key(WORKED_KEY + "a")
    with pytest.raises(InputError, match="expected 80 characters, got 0"):
        decode_recovery_key("  - ")


# ------------------------------------------------------------------ typos corrected


@fast
@given(
    secrets_st,
    st.lists(st.integers(0, 79), min_size=3, max_size=3, unique=True),
    st.lists(st.integers(1, 31), min_size=3, max_size=3),
)
def test_any_three_typos_are_corrected(
    secret: bytes, positions: list[int], deltas: list[int]
) -> None:
    chars = bare(encode_recovery_key(secret))
    for pos, delta in zip(positions, deltas, strict=True):
        substitute(chars, pos, delta)
    got = decode_recovery_key(grouped(chars))
    assert got.secret == secret
    assert 0 < got.corrected == wrong_bytes(secret, chars) <= 6


@fast
@given(secrets_st, st.integers(0, 80 - 9), st.lists(st.integers(1, 31), min_size=9, max_size=9))
def test_a_burst_of_nine_typos_is_corrected(secret: bytes, start: int, deltas: list[int]) -> None:
    chars = bare(encode_recovery_key(secret))
    for i, delta in enumerate(deltas):
        substitute(chars, start + i, delta)
    got = decode_recovery_key(grouped(chars))
    assert got.secret == secret
    assert 0 < got.corrected == wrong_bytes(secret, chars) <= 7


def test_transposed_neighbours_are_corrected() -> None:
    chars = bare(WORKED_KEY)
    chars[20], chars[21] = chars[21], chars[20]
    assert chars[20] != chars[21]
    got = decode_recovery_key(grouped(chars))
    assert got.secret == WORKED_SECRET
    assert got.corrected > 0


# ------------------------------------------------------------------ '?' erasures


@fast
@given(secrets_st, st.lists(st.integers(0, 79), min_size=7, max_size=7, unique=True))
def test_any_seven_unreadable_characters_are_recovered(secret: bytes, positions: list[int]) -> None:
    chars = bare(encode_recovery_key(secret))
    for pos in positions:
        chars[pos] = "?"
    got = decode_recovery_key(grouped(chars))
    assert got.secret == secret
    assert got.corrected == bytes_touched(positions) <= 14


def test_seven_unreadable_is_the_exact_worst_case() -> None:
    assert bytes_touched(STRADDLING[:7]) == 14
    assert bytes_touched(STRADDLING[:8]) == 16
    chars = bare(WORKED_KEY)
    for pos in STRADDLING[:7]:
        chars[pos] = "?"
    assert decode_recovery_key(grouped(chars)) == RecoveryKey(secret=WORKED_SECRET, corrected=14)
    chars[STRADDLING[7]] = "?"
    with pytest.raises(InputError, match="too many unreadable characters: 8 '\\?' hide 16 bytes"):
        decode_recovery_key(grouped(chars))


@fast
@given(secrets_st, st.integers(0, 80 - 21))
def test_a_run_of_21_unreadable_characters_is_recovered(secret: bytes, start: int) -> None:
    chars = bare(encode_recovery_key(secret))
    chars[start : start + 21] = ["?"] * 21
    got = decode_recovery_key(grouped(chars))
    assert got.secret == secret
    assert got.corrected <= 14


def test_a_run_of_22_can_be_too_many() -> None:
    start = 3  # bit offset 15 = byte 1 + 7 bits: the run touches 15 bytes
    assert bytes_touched(range(start, start + 22)) == 15
    chars = bare(WORKED_KEY)
    chars[start : start + 22] = ["?"] * 22
    with pytest.raises(InputError, match="too many unreadable"):
        decode_recovery_key(grouped(chars))


@fast
@given(secrets_st, st.data())
def test_typos_and_unreadable_mixed_within_budget(secret: bytes, data: st.DataObject) -> None:
    """Each typo costs up to 4 parity bytes, each '?' up to 2: 2*typos + unreadable <= 7."""
    typos = data.draw(st.integers(0, 3))
    unreadable = data.draw(st.integers(0, 7 - 2 * typos))
    positions = data.draw(
        st.lists(
            st.integers(0, 79),
            min_size=typos + unreadable,
            max_size=typos + unreadable,
            unique=True,
        )
    )
    chars = bare(encode_recovery_key(secret))
    for pos in positions[:typos]:
        substitute(chars, pos, data.draw(st.integers(1, 31)))
    for pos in positions[typos:]:
        chars[pos] = "?"
    got = decode_recovery_key(grouped(chars))
    assert got.secret == secret


# ------------------------------------------------------------------ never a wrong key


def test_twelve_typos_are_refused_never_misread() -> None:
    rng = random.Random(20261125)
    for _ in range(300):
        secret = rng.randbytes(32)
        chars = bare(encode_recovery_key(secret))
        for pos in rng.sample(range(80), 12):
            substitute(chars, pos, rng.randint(1, 31))
        with pytest.raises(InputError, match="too many typos"):
            decode_recovery_key(grouped(chars))


def test_beyond_capacity_is_refused_or_right_never_wrong() -> None:
    """4..11 typos: often still repaired (typos share bytes), otherwise refused."""
    rng = random.Random(7)
    outcomes = {"repaired": 0, "refused": 0}
    for trial in range(400):
        secret = rng.randbytes(32)
        chars = bare(encode_recovery_key(secret))
        for pos in rng.sample(range(80), 4 + trial % 8):
            substitute(chars, pos, rng.randint(1, 31))
        try:
            got = decode_recovery_key(grouped(chars))
        except InputError:
            outcomes["refused"] += 1
        else:
            assert got.secret == secret
            outcomes["repaired"] += 1
    assert outcomes["repaired"] > 0
    assert outcomes["refused"] > 0


def test_check_catches_miscorrection_when_erasures_use_all_parity() -> None:
    """With 14 erased bytes Reed-Solomon has no redundancy left and always 'repairs' to some
    codeword; one more typo makes it the wrong one. Only the 24-bit check refuses it."""
    rng = random.Random(99)
    erased = STRADDLING[1:8]  # bytes 2..15: the version byte stays as typed
    hidden = set(_erased_bytes(erased, 50))
    assert len(hidden) == 14
    # Typos in byte 0 are refused as an unknown format instead; keep to the check's job.
    free = [i for i in range(80) if not set(_erased_bytes([i], 50)) & (hidden | {0})]
    for _ in range(300):
        secret = rng.randbytes(32)
        chars = bare(encode_recovery_key(secret))
        for pos in erased:
            chars[pos] = "?"
        substitute(chars, rng.choice(free), rng.randint(1, 31))
        with pytest.raises(InputError, match="fails its check"):
            decode_recovery_key(grouped(chars))


def test_repairs_beyond_the_code_radius_are_refused() -> None:
    """reedsolo can return a codeword farther away than 2*errors + erasures <= 14 allows;
    such a 'repair' is unvouched for, so decode_text refuses it (bounded-distance decoding)."""
    text = "aeaacaq?aqcqmbyibefawd?nbyhra?iscdkb?fqxdamruoy4dupb6?oy2kwhx??kuro?t75i?atqtw2?"
    erased = [i for i, c in enumerate(text) if c == "?"]
    received = _to_codeword([-1 if c == "?" else ALPHABET.index(c) for c in text], 50)
    erase_pos = _erased_bytes(erased, 50)
    _, raw, _ = _codec(RECOVERY_KEY_PARITY).decode(received, erase_pos=erase_pos)
    errors = sum(1 for i in range(50) if i not in erase_pos and raw[i] != received[i])
    assert 2 * errors + len(erase_pos) > RECOVERY_KEY_PARITY  # reedsolo went too far
    with pytest.raises(InputError, match="too many typos: the text cannot be corrected"):
        decode_recovery_key(text)


def test_wrong_version_is_named() -> None:
    secret = WORKED_SECRET
    for version in (0, 2, 255):
        payload = bytes([version]) + secret + _check(version, secret)
        text = encode_text(payload, parity=RECOVERY_KEY_PARITY)
        with pytest.raises(InputError, match=f"recovery key format {version} is not known"):
            decode_recovery_key(text)


def test_check_mismatch_is_refused() -> None:
    payload = bytes([1]) + WORKED_SECRET + bytes(3)
    with pytest.raises(InputError, match="too many typos"):
        decode_recovery_key(encode_text(payload, parity=RECOVERY_KEY_PARITY))


# ------------------------------------------------------------------ hostile input


@settings(deadline=None, max_examples=300)
@given(st.text())
def test_arbitrary_text_only_raises_input_errors(text: str) -> None:
    with contextlib.suppress(PeerbakError):
        decode_recovery_key(text)


@settings(deadline=None, max_examples=200)
@given(st.text(alphabet=ALPHABET + ALPHABET.upper() + "?-018 ", min_size=60, max_size=130))
def test_key_shaped_garbage_is_refused(text: str) -> None:
    with pytest.raises(InputError):
        decode_recovery_key(text)


@pytest.mark.parametrize("filler", ["a", "\x00", "?"])
def test_huge_input_is_refused_by_the_cap_before_any_work(filler: str) -> None:
    text = filler * 10_000_000
    started = time.perf_counter()
    with pytest.raises(InputError, match="input too long"):
        decode_recovery_key(text)
    with pytest.raises(InputError, match="input too long"):
        decode_text(text, parity=8, max_chars=1000)
    assert time.perf_counter() - started < 0.5


def test_cap_leaves_room_for_generous_spacing() -> None:
    spaced = "  ".join(WORKED_KEY) + "\n"
    assert len(spaced) <= RECOVERY_KEY_MAX_INPUT
    assert decode_recovery_key(spaced).secret == WORKED_SECRET


def test_non_text_is_refused() -> None:
    with pytest.raises(InputError, match="must be text"):
        decode_recovery_key(WORKED_KEY.encode())  # type: ignore[arg-type]


# ------------------------------------------------------------------ generic layer


@settings(deadline=None, max_examples=150)
@given(st.data())
def test_generic_round_trip_and_repair(data: st.DataObject) -> None:
    parity = data.draw(st.sampled_from([1, 2, 4, 8, 16, 32, 64]))
    payload = data.draw(st.binary(min_size=1, max_size=min(200, 255 - parity)))
    group = data.draw(st.integers(1, 8))
    text = encode_text(payload, parity=parity, group=group)
    n = text_length(len(payload) + parity)
    assert len(text.replace("-", "")) == n
    assert all(len(g) == group for g in text.split("-")[:-1])
    assert decode_text(text, parity=parity, max_chars=1000) == Decoded(payload, 0)
    assert decode_text(text, parity=parity, max_chars=1000, payload_len=len(payload)).payload == (
        payload
    )
    # parity // 4 typos touch at most parity // 2 bytes: always repaired.
    chars = bare(text)
    for pos in data.draw(st.lists(st.integers(0, n - 1), max_size=parity // 4, unique=True)):
        substitute(chars, pos, data.draw(st.integers(1, 31)))
    assert decode_text("".join(chars), parity=parity, max_chars=1000).payload == payload


@fast
@given(st.binary(min_size=1, max_size=60))
def test_bit_packing_matches_base64(raw: bytes) -> None:
    text = base64.b32encode(raw).decode().rstrip("=").lower()
    values = [ALPHABET.index(c) for c in text]
    assert _to_codeword(values, len(raw)) == raw


def test_generic_pad_bits_are_not_part_of_the_code() -> None:
    text = encode_text(b"\x01", parity=2)  # 3 bytes = 24 bits in 5 characters: 1 pad bit
    assert len(text) == 5
    last = ALPHABET.index(text[-1])
    assert last % 2 == 0
    flipped = text[:-1] + ALPHABET[last | 1]
    assert decode_text(flipped, parity=2, max_chars=100) == Decoded(b"\x01", 0)


def test_generic_refusals() -> None:
    with pytest.raises(InputError, match="payload too long"):
        encode_text(bytes(242), parity=14)
    assert encode_text(bytes(241), parity=14)
    with pytest.raises(InputError, match="empty"):
        encode_text(b"", parity=4)
    with pytest.raises(ValueError, match="parity"):
        encode_text(b"x", parity=0)
    with pytest.raises(ValueError, match="parity"):
        decode_text("aaaa", parity=255, max_chars=10)
    with pytest.raises(ValueError, match="group"):
        encode_text(b"x", parity=2, group=0)
    for n in (1, 3, 6):  # no byte count has 1, 3 or 6 base32 characters
        with pytest.raises(InputError, match="cannot be a complete text code"):
            decode_text("a" * n, parity=1, max_chars=100)
    with pytest.raises(InputError, match="cannot be a complete text code"):
        decode_text("aaaaaaa", parity=4, max_chars=100)  # 4 bytes: all parity, no payload
    with pytest.raises(InputError, match="empty input"):
        decode_text(" - ", parity=4, max_chars=100)
    with pytest.raises(InputError, match="cannot be a complete text code"):
        decode_text("a" * 410, parity=4, max_chars=1000)  # 256 bytes: longer than GF(2^8) allows


def test_generic_missing_character_points_at_its_group() -> None:
    text = encode_text(bytes(range(100)), parity=16, group=4)
    groups = text.split("-")
    groups[5] = groups[5][:3]
    with pytest.raises(InputError, match="group 6 has 3 characters instead of 4"):
        decode_text("-".join(groups), parity=16, max_chars=1000, payload_len=100, group=4)


def test_invite_sized_token_with_typos() -> None:
    token = bytes(range(150))
    text = encode_text(token, parity=20)
    chars = bare(text)
    for pos in (0, 50, 100, 150, 239):
        substitute(chars, pos, 9)
    got = decode_text("".join(chars).upper(), parity=20, max_chars=2000)
    assert got.payload == token
    assert 5 <= got.corrected <= 10


def test_the_key_is_read_from_the_kit_init_writes_or_alone(tmp_path: Path) -> None:
    secret = bytes(range(32))
    key = encode_recovery_key(secret)
    home = Home(tmp_path)
    txt, _ = home.write_recovery_kit(key, NodeKeys.derive(secret).node_id, "laptop")
    kit = txt.read_text()
    assert len(kit) > RECOVERY_KEY_MAX_INPUT  # the kit alone would be refused as a key
    assert recovery_key_text(kit) == key
    assert decode_recovery_key(recovery_key_text(kit)).secret == secret
    assert recovery_key_text(f"  {key}\n") == key
    with pytest.raises(InputError, match="no key"):
        recovery_key_text("Recovery key:\n\n   \n")
    with pytest.raises(InputError):
        recovery_key_text("x" * (KEY_FILE_MAX + 1))
