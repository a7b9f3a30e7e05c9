"""A scenario: who is in the pool, how members fail and go away, and the policy under test.

Scenarios are TOML files (``simulations/scenarios/``) so a reader can see and argue with
every rate; this module parses them with :mod:`tomllib` and refuses anything unknown or
out of range with a :class:`ScenarioError` that names the file and the key. The code and
the repair policy default to peerbak's own (:func:`peerbak.core.placement.default_code`,
:class:`peerbak.core.health.RepairPolicy`), so a scenario that does not override them measures
what the daemon actually does.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from peerbak.core.errors import InputError
from peerbak.core.health import CHALLENGES_PER_DAY, DAY, RepairPolicy
from peerbak.core.placement import default_code

#: Challenges per holder per day that the owner sends (each a uniformly random shard).
DEFAULT_CHALLENGES_PER_DAY: Final = CHALLENGES_PER_DAY
YEAR: Final = 365.25 * DAY
SCENARIO_DIR: Final = Path(__file__).parent / "scenarios"

RepairModel = Literal["bandwidth", "exponential"]
#: What a failed challenge costs: "shard" (peerbak's policy: the owner then audits every
#: shard the holder should have, and only the missing ones are repaired) or "member"
#: (none of the holder's shards count until repaired away; the policy before the
#: simulator showed it to be worse).
ChallengeFailure = Literal["member", "shard"]


class ScenarioError(InputError):
    """A scenario file or object is malformed: unknown key, wrong type, value out of range."""

    code = "scenario"


@dataclass(frozen=True, slots=True)
class Outage:
    """A kind of temporary absence: the member's shards are unreachable but not lost.

    Either a Poisson process (``per_year`` starts a year) or, with ``window``, once a
    year starting uniformly within ``window`` (days into the year), e.g. summer holidays.
    The duration is uniform in ``days`` (equal bounds: fixed).
    """

    name: str
    days: tuple[float, float]
    per_year: float = 0.0
    window: tuple[float, float] | None = None


@dataclass(frozen=True, slots=True)
class MemberSpec:
    """One friend: how its node fails, leaves, loses data and goes offline."""

    name: str
    domain: str
    disk_failure_per_year: float = 0.05
    leave_per_year: float = 0.10
    leave_announced: float = 0.5  # share of departures the friend announces (roster tombstone)
    replace_days: float = 30.0  # mean days until the slot holds a working member again
    silent_loss_per_year: float = 0.0
    silent_loss_fraction: float = 0.1
    nightly_off_hours: float = 0.0
    outages: tuple[Outage, ...] = ()


@dataclass(frozen=True, slots=True)
class Scenario:
    """Everything one simulation run needs; times in seconds, sizes in bytes."""

    title: str
    members: tuple[MemberSpec, ...]
    k: int
    n: int
    policy: RepairPolicy = field(default_factory=RepairPolicy)
    challenges_per_day: float = DEFAULT_CHALLENGES_PER_DAY
    on_challenge_failure: ChallengeFailure = "shard"
    disaster_per_year: float = 0.0  # per failure domain: fire, flood, theft takes the house
    years: float = 10.0
    runs: int = 200
    packs: int = 128
    volume: float = 1e12
    uplink: float = 20e6 / 8  # bytes/s each member (and the owner) gives repair traffic
    downlink: float = 100e6 / 8  # bytes/s the owner can receive
    repair_model: RepairModel = "bandwidth"
    repair_mean: float = DAY  # exponential repair model only

    def __post_init__(self) -> None:
        _check(1 <= self.k < self.n, f"need 1 ≤ k < n, got k={self.k} n={self.n}")
        _check(
            self.n <= len(self.members),
            f"n={self.n} shards need at least {self.n} members, have {len(self.members)}",
        )
        _check(len({m.name for m in self.members}) == len(self.members), "member names repeat")
        _check(self.challenges_per_day > 0, "challenges_per_day must be positive")
        _check(self.years > 0 and self.runs > 0 and self.packs > 0, "years, runs, packs > 0")
        _check(self.volume > 0 and self.uplink > 0 and self.downlink > 0, "sizes must be > 0")
        _check(self.repair_mean > 0, "repair mean must be positive")

    @property
    def horizon(self) -> float:
        return self.years * YEAR

    def with_code(self, k: int, n: int, margin: int | None = None) -> Scenario:
        """The same pool under another code (and repair margin), for sweeps."""
        policy = self.policy
        if margin is not None:
            policy = dataclasses.replace(policy, margin=margin)
        return dataclasses.replace(self, k=k, n=n, policy=policy)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ScenarioError(message)


# --- TOML --------------------------------------------------------------------------------

_MEMBER_KEYS: Final = {
    "disk_failure_per_year",
    "leave_per_year",
    "leave_announced",
    "replace_days",
    "silent_loss_per_year",
    "silent_loss_fraction",
    "nightly_off_hours",
}
_POLICY_KEYS: Final = {
    "margin",
    "lost_after_days",
    "offline_after_days",
    "challenges_per_day",
    "on_challenge_failure",
}
_TOP: Final = {"title", "years", "runs", "code", "policy", "data", "repair", "domains"}
_TOP_TABLES: Final = {"defaults", "members"}


def find_scenario(name: str) -> Path:
    """A path as given, or the name of a shipped scenario (``pis-at-home-5``)."""
    path = Path(name)
    if path.exists():
        return path
    shipped = SCENARIO_DIR / (name if name.endswith(".toml") else f"{name}.toml")
    if shipped.exists():
        return shipped
    known = ", ".join(sorted(p.stem for p in SCENARIO_DIR.glob("*.toml")))
    raise ScenarioError(f"no scenario {name!r}: not a file, nor one of {known}")


def load_scenario(path: str | Path) -> Scenario:
    """Parse and validate a scenario file (a path or a shipped scenario's name)."""
    where = find_scenario(str(path))
    try:
        doc = tomllib.loads(where.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ScenarioError(f"{where}: cannot read: {e}") from e
    try:
        return parse_scenario(doc)
    except ScenarioError as e:
        raise ScenarioError(f"{where}: {e}") from e


def parse_scenario(doc: Mapping[str, Any]) -> Scenario:
    """A :class:`Scenario` from a parsed TOML document (see the shipped files for the keys)."""
    _known(doc, _TOP | _TOP_TABLES, "")
    defaults = _table(doc, "defaults")
    base = _member_fields(defaults, "defaults", {})
    entries = doc.get("members")
    if not isinstance(entries, list) or not entries:
        raise ScenarioError("[[members]] must list at least one member")
    members: list[MemberSpec] = []
    for i, entry in enumerate(entries):
        where = f"members[{i}]"
        if not isinstance(entry, dict):
            raise ScenarioError(f"{where} must be a table")
        _known(entry, _MEMBER_KEYS | {"outages", "name", "domain", "count"}, where)
        count = _int(entry, "count", 1, where, low=1)
        name = _str(entry, "name", f"friend-{len(members) + 1}", where)
        fields = _member_fields(entry, where, base)
        for j in range(count):
            own = name if count == 1 else f"{name}-{j + 1}"
            domain = _str(entry, "domain", own, where)
            members.append(MemberSpec(name=own, domain=domain, **fields))
    code = _table(doc, "code")
    _known(code, {"k", "n"}, "code")
    try:
        k0, n0 = default_code(len(members))
    except InputError as e:
        raise ScenarioError(str(e)) from e
    k, n = _int(code, "k", k0, "code", low=1), _int(code, "n", n0, "code", low=2)
    pol = _table(doc, "policy")
    _known(pol, _POLICY_KEYS, "policy")
    failure = _str(pol, "on_challenge_failure", "shard", "policy")
    if failure not in ("member", "shard"):
        raise ScenarioError(
            f"[policy] on_challenge_failure must be 'member' or 'shard': {failure!r}"
        )
    default = RepairPolicy()
    try:
        policy = RepairPolicy(
            margin=_int(pol, "margin", default.margin, "policy", low=0),
            lost_after=_num(pol, "lost_after_days", default.lost_after / DAY, "policy") * DAY,
            offline_after=_num(pol, "offline_after_days", default.offline_after / DAY, "policy")
            * DAY,
        )
    except InputError as e:
        raise ScenarioError(f"[policy]: {e}") from e
    data = _table(doc, "data")
    _known(data, {"volume_tb", "packs", "uplink_mbit", "downlink_mbit"}, "data")
    rep = _table(doc, "repair")
    _known(rep, {"model", "mean_days"}, "repair")
    model = _str(rep, "model", "bandwidth", "repair")
    if model not in ("bandwidth", "exponential"):
        raise ScenarioError(f"[repair] model must be 'bandwidth' or 'exponential', not {model!r}")
    dom = _table(doc, "domains")
    _known(dom, {"disaster_per_year"}, "domains")
    return Scenario(
        title=_str(doc, "title", "unnamed scenario", ""),
        members=tuple(members),
        k=k,
        n=n,
        policy=policy,
        challenges_per_day=_num(pol, "challenges_per_day", DEFAULT_CHALLENGES_PER_DAY, "policy"),
        on_challenge_failure="member" if failure == "member" else "shard",
        disaster_per_year=_num(dom, "disaster_per_year", 0.0, "domains"),
        years=_num(doc, "years", 10.0, ""),
        runs=_int(doc, "runs", 200, "", low=1),
        packs=_int(data, "packs", 128, "data", low=1),
        volume=_num(data, "volume_tb", 1.0, "data") * 1e12,
        uplink=_num(data, "uplink_mbit", 20.0, "data") * 1e6 / 8,
        downlink=_num(data, "downlink_mbit", 100.0, "data") * 1e6 / 8,
        repair_model="bandwidth" if model == "bandwidth" else "exponential",
        repair_mean=_num(rep, "mean_days", 1.0, "repair") * DAY,
    )


def _member_fields(table: Mapping[str, Any], where: str, base: dict[str, Any]) -> dict[str, Any]:
    """The member keys ``table`` sets, over ``base``; checks each range."""
    if where == "defaults":
        _known(table, _MEMBER_KEYS | {"outages"}, where)
    fields = dict(base)
    for key in _MEMBER_KEYS:
        if key in table:
            fields[key] = _num(table, key, 0.0, where)
    for key in ("leave_announced", "silent_loss_fraction"):
        if not 0 <= fields.get(key, 0.0) <= 1:
            raise ScenarioError(f"{where}.{key} must be within [0, 1]")
    if not 0 <= fields.get("nightly_off_hours", 0.0) < 24:
        raise ScenarioError(f"{where}.nightly_off_hours must be within [0, 24)")
    if "outages" in table:
        raw = table["outages"]
        if not isinstance(raw, list):
            raise ScenarioError(f"{where}.outages must be an array of tables")
        fields["outages"] = tuple(_outage(o, f"{where}.outages[{i}]") for i, o in enumerate(raw))
    return fields


def _outage(raw: object, where: str) -> Outage:
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where} must be a table")
    _known(raw, {"name", "per_year", "days", "window"}, where)
    days = _pair(raw, "days", where)
    if days is None:
        raise ScenarioError(f"{where}.days is required (a number or [min, max])")
    window = _pair(raw, "window", where)
    per_year = _num(raw, "per_year", 0.0, where)
    if (window is None) == (per_year == 0):
        raise ScenarioError(f"{where}: give exactly one of per_year (> 0) and window")
    if days[0] <= 0 or (window is not None and not 0 <= window[0] <= window[1] <= 365):
        raise ScenarioError(f"{where}: days must be > 0 and window within [0, 365]")
    return Outage(_str(raw, "name", "outage", where), days, per_year, window)


def _known(table: Mapping[str, Any], keys: set[str], where: str) -> None:
    unknown = sorted(set(table) - keys)
    if unknown:
        place = f"[{where}]" if where else "the top level"
        raise ScenarioError(f"unknown key(s) {', '.join(unknown)} in {place}")


def _table(doc: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise ScenarioError(f"[{key}] must be a table")
    return value


def _num(table: Mapping[str, Any], key: str, default: float, where: str) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScenarioError(f"{where}.{key} must be a number, got {value!r}".lstrip("."))
    if value < 0:
        raise ScenarioError(f"{where}.{key} must not be negative, got {value}".lstrip("."))
    return float(value)


def _int(table: Mapping[str, Any], key: str, default: int, where: str, low: int) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ScenarioError(f"{where}.{key} must be an integer ≥ {low}, got {value!r}".lstrip("."))
    return value


def _str(table: Mapping[str, Any], key: str, default: str, where: str) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not value:
        raise ScenarioError(f"{where}.{key} must be a non-empty string".lstrip("."))
    return value


def _pair(table: Mapping[str, Any], key: str, where: str) -> tuple[float, float] | None:
    """A number (both bounds) or a two-number array ``[low, high]``."""
    if key not in table:
        return None
    value = table[key]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (float(value), float(value))
    if (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        and value[0] <= value[1]
    ):
        return (float(value[0]), float(value[1]))
    raise ScenarioError(f"{where}.{key} must be a number or [low, high]")
