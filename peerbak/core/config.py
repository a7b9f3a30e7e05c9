"""The node's configuration: TOML, validated on decode, errors that name file, line and key.

Pure: it parses the text it is given. Keys are snake_case, as written by
:func:`default_config_text`. Sizes are bytes, or text such as ``"500GiB"``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Final, Literal

import msgspec

from peerbak.core.addresses import split_host_port
from peerbak.core.errors import ConfigError, InputError
from peerbak.core.ids import NodeId
from peerbak.core.jobs import Job, JobConfigError, check_jobs

_SIZE_RE: Final = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)", re.IGNORECASE)
_HOST_RE: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
_DURATION_RE: Final = re.compile(r"(\d+(?:\.\d+)?)\s*(s|min|m|h|d|w)?")
_URL_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
GIB: Final = 1 << 30


def parse_size(text: str | int) -> int:
    """``512``, ``"64MiB"``, ``"2G"``, ``"1.5GiB"`` → bytes (powers of 1024)."""
    if isinstance(text, bool):
        raise InputError(f"not a size: {text!r} (try 500GiB)")
    if isinstance(text, int):
        if text < 0:
            raise InputError(f"a size cannot be negative: {text}")
        return text
    match = _SIZE_RE.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise InputError(f"not a size: {text!r} (try 500GiB)")
    unit = match.group(2).lower()
    return int(float(match.group(1)) * (1 << (10 * " kmgtp".index(unit or " "))))


def parse_duration(text: str | float) -> float:
    """``90``, ``"90s"``, ``"30min"``, ``"1h"``, ``"3d"``, ``"2w"`` → seconds (a bare
    number is seconds)."""
    if isinstance(text, bool):
        raise InputError(f"not a duration: {text!r} (try 30min, 1h or 3d)")
    if isinstance(text, int | float):
        if text < 0:
            raise InputError(f"a duration cannot be negative: {text}")
        return float(text)
    match = _DURATION_RE.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise InputError(f"not a duration: {text!r} (try 30min, 1h or 3d)")
    scale = {"s": 1, "min": 60, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
    return float(match.group(1)) * scale[match.group(2) or "s"]


def _check_host_port(address: str) -> None:
    host, _ = split_host_port(address)
    _check_host(host)


def _check_host(host: str) -> None:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if _HOST_RE.fullmatch(host) is None:
            raise InputError(f"not an address or host name: {host!r}") from None


Size = int | str


class NodeSection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(max_length=64)] = ""
    listen: str = "0.0.0.0"  # noqa: S104 - a node serves its friends on every interface
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 7420
    advertise: Annotated[list[str], msgspec.Meta(max_length=16)] = []


class StorageSection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    lend: Size = 50 * GIB
    reserve_free: Size = 5 * GIB
    #: Days a deleted shard stays in this holder's trash (owners cannot shorten it).
    trash_days: Annotated[float, msgspec.Meta(ge=1, le=3650)] = 30
    #: Replaced manifests kept per member in the trash, and their bytes, at most. Every
    #: one is kept for the grace; past either bound the member's new manifests are
    #: refused until the grace frees some (newer ones never push older ones out).
    keep_manifests: Annotated[int, msgspec.Meta(ge=10, le=1_000_000)] = 2000
    keep_manifest_bytes: Size = "256MiB"
    lend_to: dict[str, Size] = {}


class DiscoverySection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    lan: bool = True


class NetworkSection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    #: Seconds a member may stay silent before it counts as unreachable for this run
    #: (transfers get more time in proportion to their size).
    timeout: Annotated[float, msgspec.Meta(ge=1, le=600)] = 30.0


class MaintenanceSection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Challenges and repair, run by the daemon (defaults: protocol/security.md)."""

    #: Whether the daemon challenges, reads back and repairs on its own.
    enabled: bool = True
    #: Challenges per holder per day, at random times.
    challenges_per_day: Annotated[float, msgspec.Meta(gt=0, le=10_000)] = 48
    #: Bytes of whole shards read back per day, to check every byte now and then.
    read_per_day: Size = "256MiB"
    #: Repair a pack once its healthy shards fall to k + margin (absent: at the first
    #: missing shard).
    repair_margin: Annotated[int, msgspec.Meta(ge=0, le=32)] | None = None
    #: Days a member may be unreachable before its shards are repaired elsewhere.
    lost_after_days: Annotated[float, msgspec.Meta(ge=1, le=365)] = 7
    #: Repair traffic per hour (0: no limit).
    repair_per_hour: Size = "4GiB"
    #: Minutes between probes of every member (uptime, latency, last seen); three missed
    #: in a row make a member unreachable. At least 0.1 (six seconds).
    probe_minutes: Annotated[float, msgspec.Meta(ge=0.1, le=1440)] = 5


#: Who may open the status page by default: this machine only.
LOOPBACK: Final = ("127.0.0.0/8", "::1/128")


class WebSection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The daemon's status page and Prometheus metrics (read-only, behind a token)."""

    enabled: bool = True
    listen: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 7421
    #: Networks (CIDR) a browser or scraper may connect from; others get 403.
    allow: Annotated[list[str], msgspec.Meta(max_length=64)] = msgspec.field(
        default_factory=lambda: list(LOOPBACK)
    )


Duration = float | str


class NotifySection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Who is told what, and when (README: Notifications)."""

    #: Apprise URLs (ntfy://, json://, mailtos://, ...); secrets may live in them.
    urls: Annotated[list[str], msgspec.Meta(max_length=64)] = []
    #: A member unreachable this long is worth a message (lost always is).
    unreachable_after: Duration = "1h"
    #: Tell when a member uses this share of what this node lends it.
    quota_warn: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.9
    #: A summary of the period's events and the pool's health.
    digest: Literal["off", "daily", "weekly"] = "off"
    #: An owner whose manifests stopped coming this long ago is worth a message.
    owner_silent_after: Duration = "3d"
    #: A dead man's switch (healthchecks.io and the like): GET on every job done,
    #: ``<url>/fail`` on every job failed.
    healthcheck_url: str = ""


class Notify(msgspec.Struct, frozen=True):
    """The notify section with its durations in seconds."""

    urls: tuple[str, ...]
    unreachable_after: float
    quota_warn: float
    digest: str
    owner_silent_after: float
    healthcheck_url: str


#: The shortest a notify duration may be: the daemon looks once a minute or so.
MIN_NOTIFY_DURATION: Final = 60.0


class Storage(msgspec.Struct, frozen=True):
    """The storage section with every size resolved to bytes."""

    lend: int
    reserve_free: int
    lend_to: dict[NodeId, int]
    #: (replaced manifests, their bytes) kept per member at most.
    manifest_limit: tuple[int, int]


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    node: NodeSection = msgspec.field(default_factory=NodeSection)
    storage_section: StorageSection = msgspec.field(default_factory=StorageSection, name="storage")
    discovery: DiscoverySection = msgspec.field(default_factory=DiscoverySection)
    network: NetworkSection = msgspec.field(default_factory=NetworkSection)
    maintenance: MaintenanceSection = msgspec.field(default_factory=MaintenanceSection)
    #: ``[[job]]`` tables: backups the daemon runs on schedules (core/jobs.py).
    job: list[Job] = []
    web: WebSection = msgspec.field(default_factory=WebSection)
    notify_section: NotifySection = msgspec.field(default_factory=NotifySection, name="notify")

    @property
    def notify(self) -> Notify:
        n = self.notify_section
        return Notify(
            tuple(n.urls),
            parse_duration(n.unreachable_after),
            n.quota_warn,
            n.digest,
            parse_duration(n.owner_silent_after),
            n.healthcheck_url,
        )

    @property
    def storage(self) -> Storage:
        s = self.storage_section
        return Storage(
            parse_size(s.lend),
            parse_size(s.reserve_free),
            {NodeId.from_hex(k): parse_size(v) for k, v in s.lend_to.items()},
            (s.keep_manifests, parse_size(s.keep_manifest_bytes)),
        )

    def lend_for(self, member: NodeId) -> int:
        """What this node lends ``member``: its override, else the default."""
        storage = self.storage
        return storage.lend_to.get(member, storage.lend)


def _line_of(text: str, path: list[str]) -> int | None:
    """The line of ``a.b.key`` in TOML text: the key inside its [table], or the table."""
    table: list[str] = []
    found_table: int | None = None
    want_table, key = path[:-1], path[-1] if path else ""
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        header = re.fullmatch(r"\[\s*([^\[\]]+?)\s*\]", line)
        if header:
            table = [part.strip() for part in header.group(1).split(".")]
            if table == path:
                found_table = number
            continue
        name = line.split("=", 1)[0].strip().strip('"')
        if "=" in line and table == want_table and name == key:
            return number
    return found_table


def _fail(source: str, text: str, path: list[str], why: str) -> ConfigError:
    line = _line_of(text, path)
    where = f"{source} line {line}" if line else source
    key = ".".join(path) or "(top level)"
    return ConfigError(f"{where}: {key}: {why}")


def parse_config(text: str, source: str = "config.toml") -> Config:
    """Decode and check; every error names the file, the line and the key."""
    try:
        raw: Any = msgspec.toml.decode(text)
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    try:
        config = msgspec.convert(raw, Config)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = re.search(r" - at `\$((?:\.[^`.\[]+|\[[^\]]*\])*)`", message)
        path = [p for p in re.findall(r"\.([^.`\[]+)", match.group(1))] if match else []
        unknown = re.match(r"Object contains unknown field `([^`]+)`", message)
        job = re.match(r"\.job\[(\d+)\](?:\.(\w+))?", match.group(1)) if match else None
        if job:
            key = unknown.group(1) if unknown else job.group(2) or ""
            why = "unknown key" if unknown else message.split(" - at ", maxsplit=1)[0]
            raise _job_fail(source, text, int(job.group(1)), key, why) from None
        if unknown:
            raise _fail(source, text, [*path, unknown.group(1)], "unknown key") from None
        why = message.split(" - at ", maxsplit=1)[0]
        raise _fail(source, text, path, why) from None
    _check(config, text, source)
    return config


def _job_line(text: str, index: int, key: str) -> int | None:
    """The line of ``key`` in the ``index``-th ``[[job]]`` table (or of its header)."""
    seen, header = -1, None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if line.startswith("["):
            if seen == index:
                break
            if re.fullmatch(r"\[\[\s*job\s*\]\]", line):
                seen += 1
                header = number if seen == index else None
            continue
        if seen == index and key and line.split("=", 1)[0].strip().strip('"') == key:
            return number
    return header


def _job_fail(source: str, text: str, index: int, key: str, why: str) -> ConfigError:
    line = _job_line(text, index, key)
    where = f"{source} line {line}" if line else source
    return ConfigError(f"{where}: [[job]] {index + 1}: {key or '(table)'}: {why}")


def _check(config: Config, text: str, source: str) -> None:
    try:
        check_jobs(config.job)
    except JobConfigError as exc:
        line = _job_line(text, exc.index, exc.key if exc.key != "keep_*" else "")
        where = f"{source} line {line}" if line else source
        raise ConfigError(f"{where}: {exc}") from None
    try:
        _check_host(config.node.listen)
    except InputError as exc:
        raise _fail(source, text, ["node", "listen"], str(exc)) from None
    for address in config.node.advertise:
        try:
            _check_host_port(address)
        except InputError as exc:
            raise _fail(source, text, ["node", "advertise"], str(exc)) from None
    try:
        _check_host(config.web.listen)
    except InputError as exc:
        raise _fail(source, text, ["web", "listen"], str(exc)) from None
    for network in config.web.allow:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise _fail(
                source, text, ["web", "allow"], f"not a network: {network!r} (try 192.168.1.0/24)"
            ) from None
    s, m = config.storage_section, config.maintenance
    for section, key, value in (
        ("storage", "lend", s.lend),
        ("storage", "reserve_free", s.reserve_free),
        ("maintenance", "read_per_day", m.read_per_day),
        ("maintenance", "repair_per_hour", m.repair_per_hour),
    ):
        try:
            parse_size(value)
        except InputError as exc:
            raise _fail(source, text, [section, key], str(exc)) from None
    for member, value in s.lend_to.items():
        try:
            NodeId.from_hex(member)
            parse_size(value)
        except InputError as exc:
            raise _fail(source, text, ["storage", "lend_to", member], str(exc)) from None
    _check_notify(config.notify_section, text, source)


def _check_notify(n: NotifySection, text: str, source: str) -> None:
    """Durations and URLs; an error names the URL by its place only (it may hold a
    secret)."""
    for key, value in (
        ("unreachable_after", n.unreachable_after),
        ("owner_silent_after", n.owner_silent_after),
    ):
        try:
            seconds = parse_duration(value)
        except InputError as exc:
            raise _fail(source, text, ["notify", key], str(exc)) from None
        if seconds < MIN_NOTIFY_DURATION:
            raise _fail(source, text, ["notify", key], "at least 1min")
    for i, url in enumerate(n.urls):
        if _URL_RE.fullmatch(url) is None:
            raise _fail(
                source, text, ["notify", "urls"], f"URL {i + 1} is not scheme://... (see apprise)"
            )
    if n.healthcheck_url and re.fullmatch(r"https?://\S+", n.healthcheck_url) is None:
        raise _fail(source, text, ["notify", "healthcheck_url"], "not an http:// or https:// URL")


#: TOML's short escapes; every other control character is written as ``\uXXXX``.
_TOML_ESCAPES: Final = {
    "\\": "\\\\",
    '"': '\\"',
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string, read back by any TOML parser as ``text``.

    JSON's quoting is close but not the same: TOML forbids a raw DEL (U+007F) too.
    """
    out = []
    for char in text:
        if char in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[char])
        elif char < " " or char == "\x7f":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def default_config_text(
    name: str,
    port: int,
    *,
    listen: str = "0.0.0.0",  # noqa: S104 - a node serves its friends on every interface
    lan: bool = True,
    web_port: int = 7421,
) -> str:
    """The commented config that ``peerbak init`` writes, with the values given rendered
    into it: users edit this file, so it is a template with comments, not a dump."""
    return f"""# peerbak node configuration (TOML). Sizes: bytes or text such as "500GiB".

[node]
# How friends see this node.
name = {toml_string(name)}
# Address and port of the SSH server friends connect to (port 0: chosen by the OS).
listen = {toml_string(listen)}
port = {int(port)}
# Addresses friends should dial ("host:port"), e.g. your router's forwarded port.
# Empty: this machine's own addresses.
advertise = []

[storage]
# What this node lends each member of the pool.
lend = "50GiB"
# Never fill the disk below this.
reserve_free = "5GiB"
# Days a shard an owner deleted stays in the trash here (ransomware on a friend's
# machine cannot wipe its backups faster than this).
trash_days = 30
# Every manifest a member's backups replace is kept in the trash for those days too,
# so `peerbak undelete` can bring back any snapshot made within them; at most this
# many (and bytes) per member: past that its new manifests wait for the grace.
keep_manifests = 2000
keep_manifest_bytes = "256MiB"

# Per-member overrides: node id = size.
[storage.lend_to]

[discovery]
# Find members on the local network (mDNS). Only updates addresses of known members.
lan = {"true" if lan else "false"}

[maintenance]
# The daemon challenges holders, reads shards back and repairs on its own.
enabled = true
# Storage challenges per holder per day, at random times (48 find a friend that lost
# 10 % of your shards within a day, 99.4 % of the time).
challenges_per_day = 48
# Whole shards read back per day, to check every byte now and then.
read_per_day = "256MiB"
# Repair a pack once its healthy shards fall to k + this margin (unset: repair at the
# first missing shard, which docs/durability.md finds far safer).
# repair_margin = 1
# Days a member may be unreachable before its shards are rebuilt elsewhere.
lost_after_days = 7
# Repair traffic per hour ("0": no limit).
repair_per_hour = "4GiB"
# Minutes between probes of every member; three missed in a row make it unreachable.
probe_minutes = 5

# Backup jobs the daemon runs on their schedules (`peerbak jobs` lists them, `peerbak
# run NAME` runs one now). Hooks are commands run without a shell; see the README.
# [[job]]
# name = "photos"
# paths = ["~/Pictures"]
# exclude = ["*.tmp"]
# schedule = "daily"            # or "*-*-* 03:00", "Mon..Fri 22:30", "every 6h", "30 3 * * *"
# jitter = "30min"
# keep_daily = 7
# keep_weekly = 4
# keep_monthly = 12

[web]
# The status page and Prometheus metrics (`peerbak web` prints the address with its
# login token, kept in web.token beside this file). Read-only.
enabled = true
listen = "127.0.0.1"
# 0: chosen by the OS (`peerbak web` finds it).
port = {int(web_port)}
# Networks allowed to connect (CIDR); anyone else gets 403. To reach the page from your
# LAN, set listen = "0.0.0.0" and add e.g. "192.168.1.0/24".
allow = ["127.0.0.0/8", "::1/128"]

[notify]
# Where to tell you when something needs you: apprise URLs, e.g.
#   "ntfys://ntfy.sh/my-secret-topic", "json://host:8080/hook",
#   "mailtos://user:app-password@gmail.com?to=me@example.org"
# They may hold secrets: keep this file private (peerbak never logs them whole).
urls = []
# A member unreachable this long is told (a member lost always is).
unreachable_after = "1h"
# Tell when a member uses this share of what this node lends it.
quota_warn = 0.9
# A summary of the period's events and the pool's health: "off", "daily" or "weekly".
digest = "off"
# Tell when an owner whose shards this node keeps has sent no backup for this long.
owner_silent_after = "3d"
# A dead man's switch (e.g. https://hc-ping.com/<uuid>): pinged on every backup job
# done, <url>/fail on every one failed; it tells you when the pings stop.
healthcheck_url = ""
"""
