"""A sealed node.secret in the home, and where its passphrase comes from."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest
from nacl.pwhash import argon2id

from peerbak.adapters import passphrase
from peerbak.adapters.home import Home
from peerbak.core.errors import ConfigError, PassphraseError

SECRET = bytes(range(32))
FAST = {"opslimit": argon2id.OPSLIMIT_MIN, "memlimit": argon2id.MEMLIMIT_MIN}


class Asked:
    """A passphrase provider that counts how often it is asked."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.times = 0

    def __call__(self) -> str:
        self.times += 1
        return self.answer


def _sealed_home(root: Path, phrase: str = "pw") -> Home:
    home = Home.create(root, SECRET, "")
    home.set_passphrase(phrase, **FAST)
    return home


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_sealed_secret_is_opened_once_with_its_passphrase(tmp_path: Path) -> None:
    _sealed_home(tmp_path)
    assert "peerbak-sealed-secret v1" in (tmp_path / "node.secret").read_text()
    asked = Asked("pw")
    home = Home.open(tmp_path, asked)
    assert asked.times == 0  # opening checks the file; the passphrase waits until needed
    assert home.is_sealed()
    assert home.secret() == SECRET
    assert home.secret() == SECRET
    assert asked.times == 1


def test_a_wrong_passphrase_is_refused(tmp_path: Path) -> None:
    _sealed_home(tmp_path)
    home = Home.open(tmp_path, Asked("nope"))
    with pytest.raises(PassphraseError, match="wrong passphrase"):
        home.secret()


def test_without_a_provider_the_environment_is_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _sealed_home(tmp_path)
    monkeypatch.delenv(passphrase.ENV_FILE, raising=False)
    monkeypatch.delenv(passphrase.ENV_COMMAND, raising=False)
    with pytest.raises(PassphraseError, match=r"PEERBAK_PASSWORD_FILE.*PEERBAK_PASSWORD_COMMAND"):
        Home.open(tmp_path).secret()
    (tmp_path / "pw").write_text("pw\n")
    monkeypatch.setenv(passphrase.ENV_FILE, str(tmp_path / "pw"))
    assert Home.open(tmp_path).secret() == SECRET


def test_a_plain_secret_never_asks(tmp_path: Path) -> None:
    Home.create(tmp_path, SECRET, "")
    asked = Asked("pw")
    home = Home.open(tmp_path, asked)
    assert not home.is_sealed()
    assert home.secret() == SECRET
    assert asked.times == 0
    assert (tmp_path / "node.secret").read_text() == SECRET.hex() + "\n"


def test_set_change_and_remove_keep_the_secret_and_the_mode(tmp_path: Path) -> None:
    home = Home.create(tmp_path, SECRET, "")
    path = tmp_path / "node.secret"
    home.set_passphrase("one", **FAST)
    first = path.read_text()
    assert _mode(path) == 0o600
    assert Home.open(tmp_path, Asked("one")).secret() == SECRET

    changed = Home.open(tmp_path, Asked("one"))
    changed.set_passphrase("two", **FAST)
    assert path.read_text() != first  # a new salt and nonce
    assert _mode(path) == 0o600
    with pytest.raises(PassphraseError):
        Home.open(tmp_path, Asked("one")).secret()
    assert Home.open(tmp_path, Asked("two")).secret() == SECRET

    Home.open(tmp_path, Asked("two")).set_passphrase(None)
    assert path.read_text() == SECRET.hex() + "\n"
    assert _mode(path) == 0o600
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_wrong_passphrase_leaves_the_file_alone(tmp_path: Path) -> None:
    _sealed_home(tmp_path)
    before = (tmp_path / "node.secret").read_bytes()
    with pytest.raises(PassphraseError):
        Home.open(tmp_path, Asked("nope")).set_passphrase(None)
    assert (tmp_path / "node.secret").read_bytes() == before


def test_created_sealed_from_the_first_byte(tmp_path: Path) -> None:
    Home.create(tmp_path / "n", SECRET, "", passphrase="pw", **FAST)
    text = (tmp_path / "n" / "node.secret").read_text()
    assert text.startswith("peerbak-sealed-secret v1\n")
    assert SECRET.hex() not in text
    assert Home.open(tmp_path / "n", Asked("pw")).secret() == SECRET


def test_hostile_limits_are_refused_at_open(tmp_path: Path) -> None:
    _sealed_home(tmp_path)
    path = tmp_path / "node.secret"
    path.write_text(path.read_text().replace("memlimit=8192", f"memlimit={100 * 1024**3}"))
    asked = Asked("pw")
    with pytest.raises(ConfigError, match="memlimit 107374182400 bytes is outside"):
        Home.open(tmp_path, asked)
    assert asked.times == 0


def test_a_huge_secret_file_is_not_read_whole(tmp_path: Path) -> None:
    Home.create(tmp_path, SECRET, "")
    (tmp_path / "node.secret").write_bytes(b"peerbak-sealed-secret v1\n" + b"x" * 100_000)
    with pytest.raises(ConfigError, match="larger than any node secret"):
        Home.open(tmp_path)


# --- the sources ---------------------------------------------------------------------------


def test_the_file_wins_over_the_command(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("from file\n")
    env = {passphrase.ENV_FILE: str(tmp_path / "pw"), passphrase.ENV_COMMAND: "false"}
    assert passphrase.from_environment(env) == "from file"
    assert passphrase.from_environment({}) is None


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"pw\n", "pw"),
        (b"pw", "pw"),
        (b"pw\n\n", "pw\n"),  # one newline only
        (b"pw\r\n", "pw"),
        (b" spaced pw \n", " spaced pw "),
    ],
)
def test_one_trailing_newline_is_stripped(tmp_path: Path, content: bytes, expected: str) -> None:
    (tmp_path / "pw").write_bytes(content)
    assert passphrase.from_environment({passphrase.ENV_FILE: str(tmp_path / "pw")}) == expected


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"\n", "empty passphrase"),
        (b"\xff\xfe\n", "not UTF-8"),
        (b"x" * 5000, "more than 4096 bytes"),
    ],
)
def test_bad_files_are_refused(tmp_path: Path, content: bytes, why: str) -> None:
    (tmp_path / "pw").write_bytes(content)
    with pytest.raises(PassphraseError, match=why):
        passphrase.from_environment({passphrase.ENV_FILE: str(tmp_path / "pw")})


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(PassphraseError, match=r"PEERBAK_PASSWORD_FILE: cannot read .*nothing"):
        passphrase.from_environment({passphrase.ENV_FILE: str(tmp_path / "nothing")})


def test_the_command_runs_without_a_shell(tmp_path: Path) -> None:
    script = tmp_path / "say.py"
    script.write_text("import sys; print(' '.join(sys.argv[1:]))")
    command = f"{sys.executable} {script} 'two words' ';' and"
    assert passphrase.from_environment({passphrase.ENV_COMMAND: command}) == "two words ; and"


@pytest.mark.parametrize(
    ("command", "why"),
    [
        ("false", r"PEERBAK_PASSWORD_COMMAND \(false\) failed with exit code 1"),
        ("/no/such/helper --pw hunter2", "cannot run /no/such/helper"),
        ("'unclosed", "cannot be split"),
        ("true", "empty passphrase"),
    ],
)
def test_a_failing_command_is_a_clear_error(command: str, why: str) -> None:
    with pytest.raises(PassphraseError, match=why) as caught:
        passphrase.from_environment({passphrase.ENV_COMMAND: command})
    assert "hunter2" not in str(caught.value)
