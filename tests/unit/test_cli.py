"""The command line: exit codes, one clear line on failure, JSON for machines."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from peerbak.cli.kit import EXIT_CODES, emit_table, exit_with, parse_size
from peerbak.cli.main import cli
from peerbak.core.errors import (
    ChecksFailed,
    DaemonUnavailable,
    InputError,
    PartialBackup,
    PartialRestore,
    PeerbakError,
    RepairStuck,
)


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_version_runs_as_a_module() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "peerbak", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("peerbak, version ")


@pytest.mark.parametrize(
    ("text", "size"),
    [("512", 512), ("64MiB", 64 << 20), ("2G", 2 << 30), ("1.5GiB", 3 << 29), ("4 k", 4096)],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "-1", "5 MB MB", "1e9"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(InputError):
        parse_size(text)


def test_codec_benchmark_json_rows() -> None:
    code, out, _ = _run(
        "benchmark",
        "codec",
        "--pairs",
        "3/5,2/3",
        "--size",
        "256KiB",
        "--seconds",
        "0.01",
        "--json",
    )
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["k"], r["n"]) for r in rows] == [(3, 5), (2, 3)]
    assert all(r["encode_mb_s"] > 0 and r["decode_missing_mb_s"] > 0 for r in rows)
    assert rows[0]["data_shards_missing"] == 2


def test_pipeline_benchmark_round_trips_what_it_stored() -> None:
    code, out, _ = _run(
        "benchmark", "pipeline", "--data", "mixed", "--size", "6MiB", "--no-fsync", "--json"
    )
    assert code == 0
    (row,) = [json.loads(line) for line in out.splitlines()]
    backup, restore = row["backup"], row["restore"]
    assert backup["bytes_in"] >= 6 << 20
    assert restore["bytes_out"] == backup["new_bytes"]
    assert backup["packs"] >= 1
    assert restore["shards_missing_per_pack"] == 2


def test_human_tables_render() -> None:
    code, out, _ = _run(
        "benchmark", "codec", "--pairs", "2/3", "--size", "64KiB", "--seconds", "0.01"
    )
    assert code == 0
    assert "encode" in out


def test_piped_tables_keep_whole_rows(capsys: pytest.CaptureFixture[str]) -> None:
    """Redirected output is for grep and scripts: no row wrapped or cut at 80 columns."""
    path = "/srv/backups/" + "photos-of-a-long-holiday/" * 4
    emit_table("snapshots", ["id", "paths", "files"], [["f7e317fe", path, 12747]])
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "f7e317fe" in line)
    assert path in row
    assert "12747" in row
    assert len(row) > 80
    assert "…" not in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["benchmark", "codec", "--pairs", "3-5"], "not a k/n pair"),
        (["benchmark", "codec", "--pairs", "5/3"], "1 <= k < n <= 32"),
        (["benchmark", "codec", "--size", "lots"], "not a size"),
    ],
)
def test_bad_input_is_one_line_and_exit_64(args: list[str], message: str) -> None:
    code, _, err = _run(*args)
    assert code == EXIT_CODES["InputError"] == 64
    assert err.count("\n") == 1
    assert message in err
    assert "Traceback" not in err


def test_json_failure_ends_with_exit_error_line() -> None:
    code, _, err = _run("benchmark", "codec", "--pairs", "3-5", "--json")
    assert code == 64
    last = json.loads(err.splitlines()[-1])
    assert last == {
        "message_type": "exit_error",
        "code": 64,
        "error": "InputError",
        "message": last["message"],
    }


def test_unknown_option_is_exit_2() -> None:
    code, _, _ = _run("benchmark", "codec", "--bogus")
    assert code == 2


def test_a_member_name_wins_over_an_id_prefix() -> None:
    """`peers trust f1` means the member named f1, even when another's id starts f1."""
    from types import SimpleNamespace

    from peerbak.cli.kit import matching

    named = SimpleNamespace(name="f1", node=bytes.fromhex("0a" * 16))
    hexed = SimpleNamespace(name="f2", node=bytes.fromhex("f1" + "00" * 15))
    other = SimpleNamespace(name="f3", node=bytes.fromhex("f1aa" + "00" * 14))
    members = [hexed, named, other]
    assert matching(members, "f1") == [named]
    assert matching(members, "F1AA") == [other]
    assert matching(members, "f1a") == [other]
    assert matching(members, "zz") == []


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (PartialBackup("2 source files could not be read"), 3),
        (ChecksFailed("errors were found"), 65),
        (RepairStuck("1 packs could not be repaired"), 69),
        (PartialRestore("some files were not restored", exit_code=69), 69),
        (PartialRestore("some files were not restored", exit_code=74), 74),
    ],
)
@pytest.mark.parametrize("as_json", [False, True])
def test_a_failure_the_output_already_lists_only_sets_the_exit_code(
    error: PeerbakError, code: int, as_json: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        exit_with(error, as_json=as_json, debug=True)
    assert exited.value.code == code
    assert capsys.readouterr() == ("", "")


def test_a_daemon_that_is_down_is_one_line_or_one_json_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    error = DaemonUnavailable("the node's daemon is not running (meanwhile nothing is ...)")
    with pytest.raises(SystemExit) as exited:
        exit_with(error, as_json=False, debug=False)
    assert exited.value.code == EXIT_CODES["PeerUnavailable"] == 75
    assert capsys.readouterr().err == f"peerbak: {error}\n"
    with pytest.raises(SystemExit):
        exit_with(error, as_json=True, debug=False)
    assert json.loads(capsys.readouterr().err) == {
        "message_type": "exit_error",
        "code": 75,
        "error": "DaemonUnavailable",
        "message": str(error),
    }


def test_sizes_on_the_command_line_read_as_in_the_config() -> None:
    from peerbak.core.config import parse_size as config_size

    for text in ("512", "64MiB", "2G", "1.5GiB", "4 k", "1p"):
        assert parse_size(text) == config_size(text)
    with pytest.raises(InputError, match=r"try 256MiB or 2GiB"):
        parse_size("lots")


def test_generate_writes_a_man_page_per_command_and_completions_that_complete(
    tmp_path: Path,
) -> None:
    code, _, err = _run(
        "generate", "--man", str(tmp_path / "man"), "--bash-completion", str(tmp_path / "pb.bash")
    )
    assert code == 0, err
    pages = {p.name for p in (tmp_path / "man").iterdir()}
    visible = {n for n, c in cli.commands.items() if not c.hidden}
    assert {f"peerbak-{n}.1" for n in visible} | {"peerbak.1"} <= pages
    backup_page = (tmp_path / "man" / "peerbak-backup.1").read_text()
    assert backup_page.startswith(".TH PEERBAK-BACKUP 1")
    assert "\\-\\-exclude\\-larger\\-than" in backup_page
    mount_page = (tmp_path / "man" / "peerbak-mount.1").read_text()
    assert "\\-\\-allow\\-other" in mount_page
    assert "\\-\\-tag" in mount_page
    if shutil.which("man"):
        shown = subprocess.run(
            ["man", "-l", str(tmp_path / "man" / "peerbak-forget.1")],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "MANWIDTH": "100"},
        ).stdout
        assert "--group-by" in shown
    assert "_PEERBAK_COMPLETE" in (tmp_path / "pb.bash").read_text()
    done = subprocess.run(
        [sys.executable, "-m", "peerbak"],
        env={
            **os.environ,
            "COMP_WORDS": "peerbak ba",
            "COMP_CWORD": "1",
            "_PEERBAK_COMPLETE": "bash_complete",
        },
        capture_output=True,
        text=True,
        check=True,
    )
    assert "backup" in done.stdout
    code, _, err = _run("generate")
    assert code == 64, err


#: What restic's users reach for every day (each flag has its integration test in
#: tests/integration): the help must list all of it.
EVERYDAY = {
    command: words.split()
    for command, words in {
        "": "--json --quiet --verbose --limit-upload --limit-download backup snapshots ls "
        "restore dump find diff mount tag forget prune stats check recover generate",
        "backup": "--files-from --stdin --stdin-filename --exclude --iexclude --exclude-file "
        "--exclude-caches --exclude-if-present --exclude-larger-than --one-file-system --tag "
        "--host --dry-run",
        "restore": "--target --include --exclude --verify --host --path --tag",
        "snapshots": "--host --path --tag --latest --group-by",
        "forget": "--keep-last --keep-within --group-by --host --path --prune",
        "diff": "--host --path --tag",
        "recover": "--key-file --from",
        "generate": "--bash-completion --zsh-completion --fish-completion --man",
    }.items()
}


@pytest.mark.parametrize("command", sorted(EVERYDAY))
def test_help_lists_every_everyday_command_and_flag(command: str) -> None:
    code, out, _ = _run(*([command] if command else []), "--help")
    assert code == 0
    listed = set(re.findall(r"^  (--?[a-z-]+|[a-z]+)", out, re.M))  # options and commands
    listed |= set(re.findall(r", (--[a-z-]+)", out))  # the long name after a short one
    assert [word for word in EVERYDAY[command] if word not in listed] == []


def test_mount_without_libfuse_is_one_line_and_exit_69(tmp_path: Path) -> None:
    """The binding loads libfuse when imported: a machine without it hears so, typed."""
    (tmp_path / "mp").mkdir()
    home, mp = str(tmp_path / "home"), str(tmp_path / "mp")
    out = subprocess.run(
        [sys.executable, "-m", "peerbak", "--home", home, "mount", mp],
        env={**os.environ, "FUSE_LIBRARY_PATH": str(tmp_path / "no-libfuse.so")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == EXIT_CODES["Unavailable"] == 69
    assert out.stderr.startswith("peerbak: mounting needs libfuse")
    assert "Traceback" not in out.stderr


def test_the_command_line_loads_no_fuse_binding_until_mount_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import sys, peerbak.cli.main; print('mfusepy' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "False"
