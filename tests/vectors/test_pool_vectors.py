"""protocol/vectors/roster.json and token.json (protocol/pool.md), checked both ways.

The vectors were produced from msgpack lists, pynacl, blake3 and reedsolo, never by
peerbak.core.pool, and the roster histories' outcomes were written by hand from the rules; so a
bug in peerbak.core.pool cannot agree with itself here. Our encoders must make the recorded
bytes; our decoders and the roster must accept exactly the valid cases.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from peerbak.core import errors
from peerbak.core.crypto import NodeKeys
from peerbak.core.pool import (
    Invite,
    Roster,
    RosterRecord,
    check_join_proof,
    decode_token,
    encode_token,
    invite_verifier,
    join_proof,
    open_record,
    sign_record,
    ssh_public_key,
)

VECTORS = Path(__file__).resolve().parents[2] / "protocol" / "vectors"


def load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    return doc


ROSTER = load("roster.json")
TOKEN = load("token.json")


def group(doc: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    tests: list[dict[str, Any]] = next(g["tests"] for g in doc["testGroups"] if g["type"] == kind)
    return tests


def tc(t: dict[str, Any]) -> str:
    return f"tc{t['tcId']}"


@pytest.mark.parametrize(
    ("doc", "algorithm", "groups"),
    [
        (ROSTER, "peerbak-roster-v1", {"SignedRecord", "RosterRules"}),
        (TOKEN, "peerbak-invite-v1", {"InviteToken", "JoinProof"}),
    ],
)
def test_files_are_consistent(doc: dict[str, Any], algorithm: str, groups: set[str]) -> None:
    assert doc["algorithm"] == algorithm
    assert doc["specification"] == "protocol/pool.md"
    assert {g["type"] for g in doc["testGroups"]} == groups
    tests = [t for g in doc["testGroups"] for t in g["tests"]]
    assert doc["numberOfTests"] == len(tests)
    assert [t["tcId"] for t in tests] == list(range(1, len(tests) + 1))
    assert {f for t in tests for f in t["flags"]} == set(doc["notes"])
    for t in tests:
        assert t["result"] in {"valid", "invalid"}
        if "error" in t:
            assert t["result"] == "invalid"
            assert issubclass(getattr(errors, t["error"]), errors.PeerbakError)


def test_keys_derive_from_their_secrets() -> None:
    for keys in ROSTER["keys"].values():
        derived = NodeKeys.derive(bytes.fromhex(keys["secret"]))
        assert bytes(derived.node_id).hex() == keys["node"]
        assert ssh_public_key(derived).hex() == keys["sshKey"]


SIGNERS = {
    name: NodeKeys.derive(bytes.fromhex(keys["secret"])) for name, keys in ROSTER["keys"].items()
}


def record_of(fields: dict[str, Any]) -> RosterRecord:
    return RosterRecord(
        pool=bytes.fromhex(fields["pool"]),
        node=bytes.fromhex(fields["node"]),
        ssh_key=bytes.fromhex(fields["sshKey"]),
        name=fields["name"],
        addresses=tuple(fields["addresses"]),
        added_by=bytes.fromhex(fields["addedBy"]),
        version=fields["version"],
        removed=fields["removed"],
    )


# ------------------------------------------------------------------------ signed records


@pytest.mark.parametrize("t", group(ROSTER, "SignedRecord"), ids=tc)
def test_signed_record(t: dict[str, Any]) -> None:
    blob = bytes.fromhex(t["blob"])
    if t["result"] == "valid":
        record = record_of(t["record"])
        signer = SIGNERS[t["signer"]]
        assert sign_record(record, signer.identity) == blob
        assert open_record(blob) == (record, bytes(signer.node_id))
        key = nacl.signing.VerifyKey(bytes(signer.node_id))
        key.verify(
            b"peerbak roster v1\x00" + bytes.fromhex(t["body"]), bytes.fromhex(t["signature"])
        )
    else:
        with pytest.raises(getattr(errors, t["error"])):
            open_record(blob)
        assert not Roster(bytes.fromhex(ROSTER["pool"])).apply(blob)


# ------------------------------------------------------------------------ roster rules


def final_state(roster: Roster) -> tuple[list[str], list[str]]:
    members = [r.node.hex() for r in roster.members()]
    removed = []
    for keys in ROSTER["keys"].values():
        record = roster.record(bytes.fromhex(keys["node"]))
        if record is not None and record.removed:
            removed.append(keys["node"])
    return members, sorted(removed)


@pytest.mark.parametrize("t", group(ROSTER, "RosterRules"), ids=tc)
def test_roster_history(t: dict[str, Any]) -> None:
    pool = bytes.fromhex(ROSTER["pool"])
    blobs = [bytes.fromhex(s["blob"]) for s in t["steps"]]
    roster = Roster(pool)
    for step, blob in zip(t["steps"], blobs, strict=True):
        assert roster.apply(blob) == step["accepted"], (step["label"], roster.last_rejection)
    assert final_state(roster) == (t["members"], t["removed"])
    for node, name in t.get("names", {}).items():
        record = roster.record(bytes.fromhex(node))
        assert record is not None
        assert record.name == name
    # the same records in reverse order (founder first) end in the same roster
    founder = bytes.fromhex(ROSTER["keys"]["A"]["node"])
    backwards = Roster(pool, founder=founder)
    for blob in reversed(blobs):
        backwards.apply(blob)
    assert final_state(backwards) == final_state(roster)
    assert backwards.blobs() == roster.blobs()


# ------------------------------------------------------------------------ invite tokens


def invite_of(fields: dict[str, Any]) -> Invite:
    return Invite(
        pool=bytes.fromhex(fields["pool"]),
        inviter=bytes.fromhex(fields["inviter"]),
        host_key=bytes.fromhex(fields["hostKey"]),
        invite_id=bytes.fromhex(fields["inviteId"]),
        secret=bytes.fromhex(fields["secret"]),
        expires=fields["expires"],
        addresses=tuple(fields["addresses"]),
    )


@pytest.mark.parametrize("t", group(TOKEN, "InviteToken"), ids=tc)
def test_invite_token(t: dict[str, Any]) -> None:
    if t["result"] == "valid":
        invite = invite_of(t["invite"])
        if "Canonical" in t["flags"]:
            assert encode_token(invite) == t["text"]
        assert decode_token(t["text"]) == invite
    else:
        with pytest.raises(getattr(errors, t["error"])):
            decode_token(t["text"])


@pytest.mark.parametrize("t", group(TOKEN, "JoinProof"), ids=tc)
def test_join_proof(t: dict[str, Any]) -> None:
    secret = bytes.fromhex(t["secret"])
    pool, invite_id, node, ssh_key = (
        bytes.fromhex(t[k]) for k in ("pool", "inviteId", "joinerNode", "joinerSshKey")
    )
    proof, verifier = bytes.fromhex(t["proof"]), bytes.fromhex(t["verifier"])
    valid = t["result"] == "valid"
    if valid:
        assert invite_verifier(secret) == verifier
        assert join_proof(secret, pool, invite_id, node, ssh_key) == proof
    assert check_join_proof(verifier, pool, invite_id, node, ssh_key, proof) is valid
