"""[[job]] tables: read as written, and every refusal names the job, the key and the
line, as a ConfigError (exit 78)."""

from __future__ import annotations

import pytest

from peerbak.core.config import default_config_text, parse_config
from peerbak.core.errors import ConfigError

BASE = default_config_text("alice", 7420)

GOOD = """
[[job]]
name = "photos"
paths = ["/home/me/Photos", "~/Pictures"]
exclude = ["*.tmp"]
tags = ["photos"]
schedule = "daily"
jitter = "30min"
keep_daily = 7
keep_weekly = 4
keep_within = "2d"
before = "mount /mnt/photos"
after = ["echo done", ["notify-send", "backup done"]]
on_error = [["sh", "-c", "echo failed: $PEERBAK_ERROR >> /tmp/log"]]

[[job]]
name = "db"
command = "pg_dump --format=custom mydb"
stdin_filename = "mydb.dump"
schedule = "Mon..Fri 22:30"
timeout = 120
prune_schedule = "monthly"
"""


def test_jobs_read_back_as_written() -> None:
    photos, db = parse_config(BASE + GOOD).job
    assert photos.name == "photos"
    assert photos.paths == ["/home/me/Photos", "~/Pictures"]
    assert str(photos.when()) == "daily"
    assert photos.jitter_seconds == 1800
    assert photos.timeout_seconds == 600  # the default
    assert photos.hooks("before") == [["mount", "/mnt/photos"]]
    assert photos.hooks("after") == [["echo", "done"], ["notify-send", "backup done"]]
    assert photos.hooks("on_error")[0][:2] == ["sh", "-c"]
    policy = photos.keep_policy()
    assert (policy.daily, policy.weekly, str(policy.within)) == (7, 4, "2d")
    assert db.is_command
    assert db.argv() == ["pg_dump", "--format=custom", "mydb"]
    assert db.filename == "mydb.dump"
    assert db.timeout_seconds == 120
    assert db.keep_policy().empty()
    assert str(db.prune_when()) == "monthly"
    assert parse_config(BASE).job == []  # the example in the default text is commented out


def _error(extra: str) -> str:
    text = BASE + extra
    with pytest.raises(ConfigError) as info:
        parse_config(text, "cfg.toml")
    return str(info.value)


def _line_of(extra: str, needle: str) -> int:
    text = BASE + extra
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


JOB = '[[job]]\nname = "docs"\npaths = ["/srv/docs"]\n'


@pytest.mark.parametrize(
    ("extra", "needle", "says"),
    [
        (JOB + 'schedule = "Mon..Fry 22:30"\n', "schedule", "job 'docs': schedule: 'Mon..Fry"),
        (JOB + 'schedule = "*-02-30"\n', "schedule", "never matches"),
        (JOB + 'prune_schedule = "sometimes"\n', "prune_schedule", "job 'docs': prune_schedule"),
        (JOB + 'jitter = "a while"\n', "jitter", "job 'docs': jitter: not a duration"),
        (JOB + "timeout = 0\n", "timeout", "job 'docs': timeout: must be more than 0"),
        (JOB + 'keep_within = "3x"\n', "keep_within", "job 'docs': keep_within"),
        (JOB + "keep_last = -5\n", "[[job]]", "job 'docs': keep_*: keep-last is -5"),
        (JOB + 'before = "echo \'unclosed"\n', "before", "job 'docs': before: cannot split"),
        (JOB + 'after = [""]\n', "after", "job 'docs': after: an empty command"),
        (JOB + "schedule = 3\n", "schedule", "[[job]] 1: schedule: Expected `str`, got `int`"),
        (JOB + "colour = 1\n", "colour", "[[job]] 1: colour: unknown key"),
        ('[[job]]\nname = "Bad Name"\npaths = ["/x"]\n', "Bad Name", "name 'Bad Name'"),
        ('[[job]]\nname = "x"\n', "[[job]]", "give either paths or command"),
        ('[[job]]\nname = "x"\npaths = ["/a"]\ncommand = "ls"\n', "paths", "either"),
        ('[[job]]\nname = "x"\npaths = ["rel/dir"]\n', "paths", "'rel/dir' is relative"),
        ('[[job]]\nname = "x"\ncommand = "ls"\nexclude = ["a"]\n', "exclude", "nothing to"),
        ('[[job]]\nname = "x"\ncommand = "ls"\nstdin_filename = "a/b"\n', "stdin_", "file name"),
        (JOB + JOB.replace("/srv/docs", "/srv/other"), 'name = "docs"', "a second job"),
        (JOB + JOB.replace('"docs"', '"docs2"'), "paths", "backs up the same"),
    ],
)
def test_bad_jobs_are_refused_naming_job_key_and_line(extra: str, needle: str, says: str) -> None:
    message = _error(extra)
    assert says in message
    assert message.startswith("cfg.toml line ")
    line = int(message.split("line ", 1)[1].split(":", 1)[0])
    lines = (BASE + extra).splitlines()
    # The line named is the key's in that job's table (or the table's header).
    assert needle in lines[line - 1] or lines[line - 1].startswith("[[job]]"), lines[line - 1]
    if needle != "[[job]]" and 'name = "docs' not in needle:
        assert needle in lines[line - 1]


def test_a_second_job_is_found_by_its_own_table() -> None:
    extra = JOB + '\n[[job]]\nname = "music"\npaths = ["/srv/music"]\nschedule = "nightly"\n'
    message = _error(extra)
    assert "job 'music': schedule" in message
    assert f"cfg.toml line {_line_of(extra, 'nightly')}:" in message
