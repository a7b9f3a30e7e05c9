"""protocol/vectors/sealed-secret.json (protocol/storage-format.md §2.1), both ways.

BUILD: from a valid vector's secret, passphrase, salt, nonce and limits, sealing makes
exactly its file. PARSE: the file opens to exactly its secret; every invalid vector is
refused with exactly the named peerbak error class. So that a bug cannot simply agree with
itself, each valid file is also opened with libsodium's primitives as the text describes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nacl.bindings
import pytest

from peerbak.core import errors, sealed

DOC: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[2] / "protocol" / "vectors" / "sealed-secret.json").read_text(
        encoding="utf-8"
    )
)
VALID = [c for c in DOC["tests"] if c["result"] == "valid"]
INVALID = [c for c in DOC["tests"] if c["result"] == "invalid"]


def _id(case: dict[str, Any]) -> str:
    return f"{case['tcId']}-{case['flags'][0]}"


def test_the_document_is_whole() -> None:
    assert DOC["numberOfTests"] == len(DOC["tests"]) == len(VALID) + len(INVALID)
    assert sorted(c["tcId"] for c in DOC["tests"]) == list(range(1, len(DOC["tests"]) + 1))
    assert all(flag in DOC["notes"] for c in DOC["tests"] for flag in c["flags"])


@pytest.mark.parametrize("case", VALID, ids=_id)
def test_build(case: dict[str, Any]) -> None:
    box = sealed.seal(
        bytes.fromhex(case["secret"]),
        case["passphrase"],
        salt=bytes.fromhex(case["salt"]),
        nonce=bytes.fromhex(case["nonce"]),
        opslimit=case["opslimit"],
        memlimit=case["memlimit"],
    )
    assert box.text() == case["file"]


@pytest.mark.parametrize("case", VALID, ids=_id)
def test_parse(case: dict[str, Any]) -> None:
    opened = sealed.unseal(sealed.parse_sealed(case["file"]), case["passphrase"])
    assert opened == bytes.fromhex(case["secret"])


@pytest.mark.parametrize("case", VALID, ids=_id)
def test_libsodium_alone_opens_it(case: dict[str, Any]) -> None:
    lines = case["file"].splitlines()
    assert lines[0] == "peerbak-sealed-secret v1"
    fields = dict(line.split("=", 1) for line in lines[1:])
    assert fields["kdf"] == "argon2id"
    key = nacl.bindings.crypto_pwhash_alg(
        32,
        case["passphrase"].encode("utf-8"),
        bytes.fromhex(fields["salt"]),
        int(fields["opslimit"]),
        int(fields["memlimit"]),
        nacl.bindings.crypto_pwhash_ALG_ARGON2ID13,
    )
    opened = nacl.bindings.crypto_secretbox_open(
        bytes.fromhex(fields["box"]), bytes.fromhex(fields["nonce"]), key
    )
    assert opened == bytes.fromhex(case["secret"])


@pytest.mark.parametrize("case", INVALID, ids=_id)
def test_invalid_files_are_refused(case: dict[str, Any]) -> None:
    error: type[Exception] = getattr(errors, case["error"])
    with pytest.raises(error) as caught:
        sealed.unseal(sealed.parse_sealed(case["file"]), case["passphrase"])
    assert type(caught.value) is error
    assert case["passphrase"] not in str(caught.value)
