"""Config: every refusal names the file, the line and the key."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from peerbak.core.config import default_config_text, parse_config, parse_size, toml_string
from peerbak.core.errors import ConfigError, InputError
from peerbak.core.ids import NodeId

TEXT = default_config_text("alice", 7420)


def _line(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_default_text_round_trips() -> None:
    config = parse_config(TEXT)
    assert config.node.name == "alice"
    assert config.node.port == 7420
    assert config.storage.lend == 50 << 30
    assert config.storage.reserve_free == 5 << 30
    assert config.discovery.lan is True


@pytest.mark.parametrize(
    ("name", "port", "listen", "lan"),
    [
        ("", 0, "127.0.0.1", False),
        ('Al "the" \\ back\tup', 65535, "::1", True),
        ("rené\u2028\x7f\x00", 7421, "backup.example.org", False),
    ],
)
def test_init_values_round_trip(name: str, port: int, listen: str, lan: bool) -> None:
    text = default_config_text(name, port, listen=listen, lan=lan)
    node = parse_config(text).node
    assert (node.name, node.port, node.listen) == (name, port, listen)
    assert parse_config(text).discovery.lan is lan
    # Only the rendered values differ from the defaults: every comment is kept.
    comments = [line for line in TEXT.splitlines() if line.startswith("#")]
    assert [line for line in text.splitlines() if line.startswith("#")] == comments


@given(st.text())
def test_any_text_is_a_toml_string(text: str) -> None:
    assert msgspec.toml.decode(f"v = {toml_string(text)}") == {"v": text}


def test_empty_config_is_all_defaults() -> None:
    assert parse_config("") == parse_config("\n# nothing\n")


@pytest.mark.parametrize(
    ("edit", "needle", "words"),
    [
        (
            lambda t: t.replace("[node]\n", "[node]\nprot = 22\n", 1),
            "prot = 22",
            "node.prot: unknown key",
        ),
        (
            lambda t: t.replace('lend = "50GiB"', 'lend = "lots"'),
            'lend = "lots"',
            "storage.lend: not a size",
        ),
        (
            lambda t: t.replace("port = 7420", 'port = "x"'),
            'port = "x"',
            "node.port: Expected `int`",
        ),
        (lambda t: t.replace("port = 7420", "port = 70000"), "port = 70000", "node.port"),
        (
            lambda t: t.replace('listen = "0.0.0.0"', 'listen = "no way"'),
            'listen = "no way"',
            "node.listen",
        ),
        (
            lambda t: t.replace("advertise = []", 'advertise = ["host"]'),
            "advertise = [",
            "node.advertise",
        ),
        (lambda t: t.replace("lan = true", 'lan = "yes"'), 'lan = "yes"', "discovery.lan"),
        (
            lambda t: t.replace("[storage.lend_to]\n", '[storage.lend_to]\nzz = "1G"\n'),
            'zz = "1G"',
            "storage.lend_to.zz: not a node id",
        ),
    ],
)
def test_refusals_name_line_and_key(edit: object, needle: str, words: str) -> None:
    text = edit(TEXT)  # type: ignore[operator]
    with pytest.raises(ConfigError) as info:
        parse_config(text, "home/config.toml")
    message = str(info.value)
    assert message.startswith(f"home/config.toml line {_line(text, needle)}: ")
    assert words in message


def test_broken_toml_names_the_file() -> None:
    with pytest.raises(ConfigError, match=r"^c\.toml: not valid TOML"):
        parse_config("[node\n", "c.toml")


def test_per_member_lending() -> None:
    friend = NodeId(bytes(range(32)))
    text = TEXT.replace("[storage.lend_to]\n", f'[storage.lend_to]\n{friend.hex()} = "1TiB"\n')
    config = parse_config(text)
    assert config.lend_for(friend) == 1 << 40
    assert config.lend_for(NodeId(bytes(32))) == 50 << 30


@pytest.mark.parametrize(
    ("text", "size"),
    [("512", 512), (4096, 4096), ("64MiB", 64 << 20), ("1.5GiB", 3 << 29), ("2 T", 2 << 40)],
)
def test_sizes(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "-1", -1, "1e3", True])
def test_bad_sizes(text: str | int) -> None:
    with pytest.raises(InputError):
        parse_size(text)
