"""Invite tokens and the join proof (protocol/pool.md §5–6): typo-correcting tokens, the
proof bound to the joiner's keys, and the join claim."""

from __future__ import annotations

import random
from typing import Any

import msgspec
import pytest

from peerbak.core import pool as P
from peerbak.core.crypto import NodeKeys
from peerbak.core.errors import (
    InputError,
    IntegrityError,
    RemoteProtocolError,
)
from peerbak.core.pool import (
    Invite,
    JoinClaim,
    Roster,
    SignedRecord,
    check_join_claim,
    check_join_proof,
    decode_join_claim,
    decode_token,
    encode_join_claim,
    encode_token,
    invite_verifier,
    is_expired,
    join_claim,
    join_proof,
    new_invite,
    propose_join,
    ssh_public_key,
)
from tests.unit.poolkit import (
    ALPHABET,
    OTHER_POOL,
    POOL,
    A,
    B,
    C,
    founded,
    nid,
    raw_sign,
    rec,
)

# ------------------------------------------------------------------------ invite tokens


def fixed_invite(addresses: tuple[str, ...] = ("192.168.1.20:4022",)) -> Invite:
    return Invite(
        pool=POOL,
        inviter=nid(A),
        host_key=ssh_public_key(A),
        invite_id=bytes(range(100, 116)),
        secret=bytes(range(32)),
        expires=1_800_000_000,
        addresses=addresses,
    )


def test_new_invite_uses_the_given_randomness_and_clock() -> None:
    invite, verifier = new_invite(
        A, POOL, ssh_public_key(A), ["a.example:22"], 1000.5, 3600, random.Random(1).randbytes
    )
    rnd = random.Random(1)
    assert invite.invite_id == rnd.randbytes(16)
    assert invite.secret == rnd.randbytes(32)
    assert invite.expires == 4600
    assert invite.inviter == nid(A)
    assert verifier == invite_verifier(invite.secret)
    assert verifier != invite.secret
    assert not is_expired(invite, 4599.9)
    assert is_expired(invite, 4600)
    with pytest.raises(InputError):
        new_invite(A, POOL, ssh_public_key(A), [], 1000, 0, random.Random(1).randbytes)
    with pytest.raises(InputError):
        new_invite(A, POOL, ssh_public_key(A), ["a:1"] * 9, 1000, 60, random.Random(1).randbytes)


def test_invite_repr_hides_the_secret() -> None:
    invite = fixed_invite()
    assert invite.secret.hex() not in repr(invite)
    assert invite.invite_id.hex() in repr(invite)


def test_token_round_trip() -> None:
    invite = fixed_invite()
    token = encode_token(invite)
    assert token.startswith("pb1-")
    assert set(token[4:]) <= set(ALPHABET + "-")
    assert decode_token(token) == invite
    assert decode_token(invite_text_variants(token)) == invite


def invite_text_variants(token: str) -> str:
    """Pasted with a line break, upper case and spaces instead of dashes."""
    body = token[4:].upper().replace("-", " ")
    return "  PB1-" + body[:100] + "\n" + body[100:] + "\n"


def test_token_with_no_addresses_and_with_many() -> None:
    for addresses in (
        (),
        ("a:1",) * 8,
        ("[2001:db8::1]:4022", "nas.example.org:22", "10.0.0.2:22"),
    ):
        invite = fixed_invite(addresses)
        assert decode_token(encode_token(invite)) == invite


def test_token_too_big_is_refused() -> None:
    with pytest.raises(InputError, match="fit"):
        encode_token(fixed_invite(("h" * 60 + ":22",) * 2))


def chars_of(token: str) -> list[str]:
    return list(token[4:].replace("-", ""))


def with_chars(chars: list[str]) -> str:
    s = "".join(chars)
    return "pb1-" + "-".join(s[i : i + 5] for i in range(0, len(s), 5))


#: Characters 1 and 4 of 8-character blocks straddle two bytes, no two sharing one.
STRADDLING = [8 * block + off for block in range(20) for off in (1, 4)]


def test_four_typos_anywhere_are_corrected() -> None:
    invite = fixed_invite()
    chars = chars_of(encode_token(invite))
    rng = random.Random(7)
    for _ in range(30):
        typed = chars[:]
        for pos in rng.sample(STRADDLING, 4):
            typed[pos] = ALPHABET[(ALPHABET.index(typed[pos]) + rng.randrange(1, 32)) % 32]
        assert decode_token(with_chars(typed)) == invite


def test_eight_unreadable_characters_are_restored() -> None:
    invite = fixed_invite()
    chars = chars_of(encode_token(invite))
    for pos in STRADDLING[:8]:
        chars[pos] = "?"
    assert decode_token(with_chars(chars)) == invite


def test_garbled_tokens_are_refused() -> None:
    chars = chars_of(encode_token(fixed_invite()))
    rng = random.Random(11)
    for _ in range(50):
        typed = chars[:]
        for pos in rng.sample(range(len(typed)), 20):
            typed[pos] = ALPHABET[(ALPHABET.index(typed[pos]) + rng.randrange(1, 32)) % 32]
        with pytest.raises(InputError):
            decode_token(with_chars(typed))
    with pytest.raises(InputError):
        decode_token(with_chars(chars[:-1]))  # a character lost


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("pb2-aaaaa-aaaaa", "format 2"),
        ("pb-aaaaa", "not a peerbak invite token"),
        ("rk1-aaaaa", "not a peerbak invite token"),
        ("aeaac-aqdaq", "not a peerbak invite token"),
        ("", "not a peerbak invite token"),
        ("pb1-" + "a" * 1100, "too long"),
        ("pb1-abc!d", "unexpected character"),
    ],
)
def test_wrong_prefix_or_shape_is_refused(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        decode_token(text)


def test_token_of_another_kind_is_refused() -> None:
    """A valid text code whose payload is not an invite (wrong check, or not msgpack)."""
    from peerbak.core.textcode import encode_text

    junk = b"\x01" * 60
    with pytest.raises(InputError, match="check"):
        decode_token("pb1-" + encode_text(junk, parity=16))
    body = msgspec.msgpack.encode([1, 2, 3])
    with pytest.raises(InputError, match="malformed"):
        decode_token("pb1-" + encode_text(body + P.invites._token_check(body), parity=16))
    short = msgspec.structs.replace(fixed_invite(), secret=bytes(31))
    body = msgspec.msgpack.encode(short)
    with pytest.raises(InputError, match="secret"):
        decode_token("pb1-" + encode_text(body + P.invites._token_check(body), parity=16))


# ------------------------------------------------------------------------ the join proof


def proof_for(keys: NodeKeys, secret: bytes = bytes(range(32))) -> bytes:
    invite = fixed_invite()
    return join_proof(secret, invite.pool, invite.invite_id, nid(keys), ssh_public_key(keys))


def test_proof_checks_with_the_verifier_alone() -> None:
    invite = fixed_invite()
    verifier = invite_verifier(invite.secret)
    assert len(verifier) == 32
    assert check_join_proof(
        verifier, POOL, invite.invite_id, nid(B), ssh_public_key(B), proof_for(B)
    )


def test_proof_is_bound_to_the_joiners_keys_and_the_invite() -> None:
    invite = fixed_invite()
    verifier = invite_verifier(invite.secret)
    proof = proof_for(B)
    cases = [
        (POOL, invite.invite_id, nid(C), ssh_public_key(B)),  # another identity
        (POOL, invite.invite_id, nid(B), ssh_public_key(C)),  # another ssh key
        (POOL, bytes(16), nid(B), ssh_public_key(B)),  # another invite
        (OTHER_POOL, invite.invite_id, nid(B), ssh_public_key(B)),  # another pool
    ]
    for args in cases:
        assert not check_join_proof(verifier, *args, proof)
    assert not check_join_proof(
        invite_verifier(bytes(32)), POOL, invite.invite_id, nid(B), ssh_public_key(B), proof
    )
    assert not check_join_proof(
        verifier, POOL, invite.invite_id, nid(B), ssh_public_key(B), proof_for(B, bytes(32))
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"verifier": bytes(31)},
        {"verifier": b"\xff" * 32},
        {"proof": bytes(63)},
        {"proof": bytes(64)},
        {"pool": bytes(15)},
        {"node": "not bytes"},
    ],
)
def test_check_join_proof_returns_false_on_junk(bad: dict[str, Any]) -> None:
    invite = fixed_invite()
    args: dict[str, Any] = {
        "verifier": invite_verifier(invite.secret),
        "pool": POOL,
        "invite_id": invite.invite_id,
        "node": nid(B),
        "ssh": ssh_public_key(B),
        "proof": proof_for(B),
    }
    args.update(bad)
    assert not check_join_proof(
        args["verifier"], args["pool"], args["invite_id"], args["node"], args["ssh"], args["proof"]
    )


def test_join_claim_flow() -> None:
    roster, _ = founded()
    invite, verifier = new_invite(
        A, POOL, ssh_public_key(A), ["a.example:22"], 0, 3600, random.Random(3).randbytes
    )
    token = encode_token(invite)
    # joiner
    got = decode_token(token)
    assert not is_expired(got, 10)
    claim = join_claim(B, got, "bob", ["b.example:22"])
    wire = encode_join_claim(claim)
    # inviter
    received = decode_join_claim(wire)
    assert received.invite_id == invite.invite_id
    proposal = check_join_claim(received, pool=POOL, inviter=nid(A), verifier=verifier)
    assert (proposal.node, proposal.ssh_key, proposal.name) == (nid(B), ssh_public_key(B), "bob")
    admission = roster.admit(A, proposal)
    assert roster.apply(admission)
    # joiner rebuilds the roster from the reply
    mine = Roster(POOL)
    for blob in roster.blobs():
        mine.apply(blob)
    assert mine.is_member(nid(B))
    assert mine.ssh_keys() == roster.ssh_keys()


def test_sniffed_proof_cannot_admit_another_key() -> None:
    invite = fixed_invite()
    verifier = invite_verifier(invite.secret)
    honest = join_claim(B, invite, "bob", [])
    thief = JoinClaim(honest.invite_id, honest.proof, propose_join(C, POOL, nid(A), "mallory", []))
    with pytest.raises(IntegrityError):
        check_join_claim(thief, pool=POOL, inviter=nid(A), verifier=verifier)


def test_join_claim_checks() -> None:
    invite = fixed_invite()
    verifier = invite_verifier(invite.secret)
    claim = join_claim(B, invite, "bob", [])
    with pytest.raises(RemoteProtocolError, match="another pool"):
        check_join_claim(claim, pool=OTHER_POOL, inviter=nid(A), verifier=verifier)
    with pytest.raises(RemoteProtocolError, match="another inviter"):
        check_join_claim(claim, pool=POOL, inviter=nid(C), verifier=verifier)
    with pytest.raises(IntegrityError):
        check_join_claim(claim, pool=POOL, inviter=nid(A), verifier=invite_verifier(bytes(32)))
    other = JoinClaim(
        claim.invite_id, claim.proof, raw_sign(rec(B, added_by=A), C, P.PROPOSAL_DOMAIN)
    )
    with pytest.raises(RemoteProtocolError, match="signed by the joiner"):
        check_join_claim(other, pool=POOL, inviter=nid(A), verifier=verifier)
    signed = msgspec.msgpack.decode(claim.proposal, type=SignedRecord)
    bad_sig = msgspec.msgpack.encode(SignedRecord(signed.body, signed.signer, bytes(64)))
    with pytest.raises(IntegrityError):
        check_join_claim(
            JoinClaim(claim.invite_id, claim.proof, bad_sig),
            pool=POOL,
            inviter=nid(A),
            verifier=verifier,
        )
    tomb = raw_sign(rec(B, added_by=A, removed=True), B, P.PROPOSAL_DOMAIN)
    with pytest.raises(RemoteProtocolError):
        check_join_claim(
            JoinClaim(claim.invite_id, claim.proof, tomb),
            pool=POOL,
            inviter=nid(A),
            verifier=verifier,
        )


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"\x93",
        b"\x00" * (P.MAX_JOIN_CLAIM + 1),
        msgspec.msgpack.encode([bytes(15), bytes(64), b""]),
        msgspec.msgpack.encode([bytes(16), bytes(63), b""]),
        msgspec.msgpack.encode([bytes(16), bytes(64), b"", 1]),
    ],
)
def test_malformed_join_claims(blob: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_join_claim(blob)
