"""The status page as HTML: server-rendered, inline CSS and SVG, no script at all.

Everything shown comes from the dashboard's plain data, and much of it from friends
(member names) or from files (paths, tags): every value goes through :func:`esc`, and
the page is served under a Content-Security-Policy that allows no script, no frame and
no outside resource, with only this stylesheet (by its hash) as inline style.
"""

from __future__ import annotations

import base64
import hashlib
import html
import time
from collections.abc import Iterable, Sequence
from typing import Any, Final

from peerbak.core.words import plural

#: Seconds between reloads of the page (a meta refresh: no script needed).
REFRESH: Final = 60

CSS: Final = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:72em;padding:0 1em;
color:#1d2126;background:#fbfbfc}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.6em 0 .4em;
border-bottom:1px solid #d5d9de}
.sub{color:#5b6470;margin:0}
.verdict{padding:.7em 1em;border-radius:6px;font-weight:600;margin:.8em 0 .3em}
.good{background:#e3f4e6;color:#17532a}.warn{background:#fdf3d8;color:#6b4a00}
.bad{background:#fbe2e0;color:#7a1b12}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.25em .6em;
border-bottom:1px solid #eceff2;vertical-align:top}th{color:#5b6470;font-weight:500}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.state{padding:0 .5em;border-radius:3px;font-size:.9em}
.s-ok{background:#e3f4e6}.s-unreachable{background:#fdf3d8}.s-lost,.s-failing{background:#fbe2e0}
.l-warning{color:#6b4a00}.l-error{color:#7a1b12;font-weight:600}
.charts{display:flex;flex-wrap:wrap;gap:2em}.charts figure{margin:0}
figcaption{color:#5b6470;font-size:.9em;max-width:460px}
code{font-size:.92em}ul{margin:.3em 0}
"""

#: What the page may load and run: nothing but its own stylesheet.
CSP: Final = (
    "default-src 'none'; "
    f"style-src 'sha256-{base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()}'; "
    "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


def esc(value: Any) -> str:
    """Any value as HTML text, quotes included (it may land in an attribute)."""
    return html.escape("" if value is None else str(value), quote=True)


def size(n: float | None) -> str:
    if n is None:
        return "–"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def stamp(t: float | None) -> str:
    return "never" if t is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def ago(t: float | None, now: float) -> str:
    if t is None:
        return "never"
    seconds = max(0.0, now - t)
    for unit, length in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= length:
            return f"{seconds / length:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def when(t: float | None, now: float) -> str:
    """A time as text (its age) with the date in its title."""
    return f'<span title="{esc(stamp(t))}">{esc(ago(t, now))}</span>'


def table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], *, numeric: set[int] | None = None
) -> str:
    """Cells are HTML already (escaped by the caller); ``numeric`` columns align right."""
    right = numeric or set()

    def cls(i: int) -> str:
        return ' class="n"' if i in right else ""

    head = "".join(f"<th{cls(i)}>{esc(h)}</th>" for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(f"<td{cls(i)}>{c}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _verdict_class(health: dict[str, Any]) -> str:
    verdict = str(health["verdict"])
    if not health["restorable_now"] or verdict.startswith("AT RISK"):
        return "bad"
    return "good" if verdict.startswith(("healthy", "no backups")) else "warn"


def page(data: dict[str, Any]) -> str:
    """The whole status page."""
    now = float(data["generated"])
    health = data["health"]
    node = data["node"]
    title = f"peerbak: {node['name'] or node['id'][:12]}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="{REFRESH}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="referrer" content="no-referrer"><title>{esc(title)}</title>'
        f"<style>{CSS}</style></head><body>"
        f"<h1>{esc(title)}</h1>"
        f'<p class="sub">node <code>{esc(node["id"][:16])}</code> · as of '
        f"{esc(stamp(now))} (members as last probed by the daemon) · reloads every "
        f'{REFRESH} s · <a href="status.json">JSON</a> · <a href="metrics">metrics</a></p>'
        + _health(health)
        + _members(health["members"], now)
        + _jobs(data["jobs"], now)
        + _charts(data["charts"], now)
        + _repair(data["repair"], health, data["space"])
        + _snapshots(data, now)
        + _events(data["events"], now)
        + "</body></html>\n"
    )


def _health(h: dict[str, Any]) -> str:
    advice = "".join(f"<li>{esc(a)}</li>" for a in h["advice"])
    backups = "".join(
        f"<li>{esc(b['host'])} <code>{esc(' '.join(b['paths']))}</code>: "
        f"{esc(stamp(b['time']))} (snapshot <code>{esc(b['snapshot'][:8])}</code>)</li>"
        for b in h["last_backups"]
    )
    restorable = "yes" if h["restorable_now"] else "NO"
    return (
        f'<h2>Pool</h2><p id="verdict" class="verdict {_verdict_class(h)}">'
        f"{esc(h['verdict'])}</p>"
        f'<p>Restorable now: <strong id="restorable-now">{restorable}</strong> · '
        f'<span id="packs">{int(h["packs"])}</span> packs, {int(h["packs_full"])} with every '
        f"shard healthy</p>"
        f"<ul>{advice}</ul>" + (f"<p>Last backups:</p><ul>{backups}</ul>" if backups else "")
    )


def _members(members: list[dict[str, Any]], now: float) -> str:
    rows = [
        (
            f'<span class="member-name">{esc(m["name"])}</span>',
            f'<span class="state member-state s-{esc(m["state"])}" data-state="{esc(m["state"])}">'
            f"{esc(m['state'])}</span>",
            when(m["last_seen"], now),
            esc(f"{m['uptime'] * 100:.0f} %" if m["uptime"] is not None else "–"),
            esc(m["challenges_passed"]),
            esc(m["challenges_failed"]),
            esc(size(m["bytes_held_for_us"])),
            esc(size(m["bytes_we_hold_for_it"])),
        )
        for m in sorted(members, key=lambda m: str(m["name"]))
    ]
    return (
        f'<h2>Members ({len(members)})</h2><div id="members">'
        + table(
            [
                "member",
                "state",
                "last seen",
                "uptime",
                "challenges passed",
                "failed",
                "holds for us",
                "we hold for it",
            ],
            rows,
            numeric={3, 4, 5, 6, 7},
        )
        + "</div>"
    )


def _jobs(jobs: list[dict[str, Any]], now: float) -> str:
    if not jobs:
        return "<h2>Jobs</h2><p>No backup job has run yet.</p>"
    rows = []
    for j in jobs:
        outcome = (
            f"snapshot <code>{esc(j['snapshot'][:8])}</code>" if j["snapshot"] else esc(j["error"])
        )
        history = "".join(
            f"<li>{esc(stamp(r['time']))} {esc(r['result'])}: {esc(r['message'])}</li>"
            for r in j["runs"]
        )
        rows.append(
            (
                f'<span class="job-name">{esc(j["name"])}</span>',
                when(j["last_run"], now),
                f'<span class="l-{esc(j["level"])}">{esc(j["result"])}</span>',
                outcome,
                when(j["last_success"], now),
                f"<details><summary>{esc(plural(len(j['runs']), 'run'))}</summary>"
                f"<ul>{history}</ul></details>",
            )
        )
    return "<h2>Jobs</h2>" + table(
        ["job", "last run", "result", "snapshot / error", "last success", "history"], rows
    )


def _repair(r: dict[str, Any], h: dict[str, Any], space: dict[str, Any]) -> str:
    rows = [
        ("packs waiting for repair", r["packs_repairable"]),
        ("packs below k (cannot be rebuilt now)", r["packs_below_k"]),
        ("packs not restorable from members reachable now", r["packs_below_k_now"]),
        ("rebuilt shards waiting to upload", r["uploads_pending"]),
        ("old shards waiting to be released", r["releases_pending"]),
    ]
    by_health = ", ".join(
        f"{b['packs']} with {b['healthy']} of {b['n']} (k {b['k']})" for b in h["by_health"]
    )
    return (
        "<h2>Repair</h2>"
        + table(["", "count"], [(esc(a), esc(b)) for a, b in rows], numeric={1})
        + f"<p>Packs by healthy shards: {esc(by_health or 'none')}. Stored: "
        f"{esc(size(space['deduplicated_bytes']))} of data, "
        f"{esc(size(space['stored_bytes']))} on members' disks.</p>"
    )


def _snapshots(data: dict[str, Any], now: float) -> str:
    snaps = data["snapshots"]
    rows = [
        (
            f"<code>{esc(s['id'][:8])}</code>",
            when(s["time"], now),
            esc(s["host"]),
            f"<code>{esc(' '.join(s['paths']))}</code>",
            esc(", ".join(s["tags"])),
            esc(s["files"]),
            esc(size(s["bytes"])),
            esc(size(s["data_added"])),
        )
        for s in snaps
    ]
    shown = f" (newest {len(snaps)} of {data['snapshots_total']})" if snaps else ""
    return f"<h2>Snapshots{esc(shown)}</h2>" + (
        table(
            ["id", "time", "host", "paths", "tags", "files", "size", "added"],
            rows,
            numeric={5, 6, 7},
        )
        if snaps
        else "<p>No snapshot yet.</p>"
    )


def _events(events: list[dict[str, Any]], now: float) -> str:
    rows = [
        (
            when(e["time"], now),
            f'<span class="l-{esc(e["level"])}">{esc(e["level"])}</span>',
            esc(e["kind"]),
            esc(e["message"]),
        )
        for e in events
    ]
    return "<h2>Recent events</h2>" + (
        table(["when", "level", "kind", "what"], rows) if rows else "<p>Nothing logged yet.</p>"
    )


# --- charts -----------------------------------------------------------------------------------

W: Final = 460
H: Final = 160
PAD: Final = 36


def _axis(label_top: str, label_left: str, label_right: str) -> str:
    return (
        f'<line x1="{PAD}" y1="{H - 20}" x2="{W - 8}" y2="{H - 20}" stroke="#9aa3ad"/>'
        f'<line x1="{PAD}" y1="8" x2="{PAD}" y2="{H - 20}" stroke="#9aa3ad"/>'
        f'<text x="{PAD + 4}" y="16" font-size="11" fill="#5b6470">{esc(label_top)}</text>'
        f'<text x="{PAD}" y="{H - 6}" font-size="11" fill="#5b6470">{esc(label_left)}</text>'
        f'<text x="{W - 8}" y="{H - 6}" font-size="11" fill="#5b6470" '
        f'text-anchor="end">{esc(label_right)}</text>'
    )


def stored_chart(points: list[dict[str, Any]], now: float) -> str:
    """Bytes stored on members' disks (cumulative, from each snapshot's summary) from the
    first snapshot until now, as a step line with a dot at each snapshot."""
    if not points:
        return (
            '<svg id="chart-stored" width="460" height="40"><text x="0" y="20" '
            'font-size="12">no snapshot yet</text></svg>'
        )
    t0 = float(points[0]["time"])
    t1 = max(now, float(points[-1]["time"]))
    top = max(float(p["bytes"]) for p in points) or 1.0
    span = (t1 - t0) or 1.0

    def x(t: float) -> float:
        return PAD + 4 + (W - 16 - PAD) * (t - t0) / span

    def y(b: float) -> float:
        return (H - 20) - (H - 32) * b / top

    path = [f"{x(t0):.1f},{y(0):.1f}"]
    dots = []
    previous = 0.0
    for p in points:
        path += [f"{x(p['time']):.1f},{y(previous):.1f}", f"{x(p['time']):.1f},{y(p['bytes']):.1f}"]
        dots.append(
            f'<circle cx="{x(p["time"]):.1f}" cy="{y(p["bytes"]):.1f}" r="3" fill="#2f6fb5">'
            f"<title>{esc(stamp(p['time']))}: {esc(size(p['bytes']))}</title></circle>"
        )
        previous = float(p["bytes"])
    path.append(f"{x(t1):.1f},{y(previous):.1f}")
    return (
        f'<svg id="chart-stored" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
        'role="img" aria-label="stored bytes over time">'
        + _axis(size(top), stamp(t0), stamp(t1))
        + f'<polyline fill="none" stroke="#2f6fb5" stroke-width="2" points="{" ".join(path)}"/>'
        + "".join(dots)
        + "</svg>"
    )


def challenge_chart(c: dict[str, Any]) -> str:
    """Failed challenges per day (bars) over the last days."""
    days = c["failed_per_day"]
    top = max((d["failed"] for d in days), default=0) or 1
    width = (W - 8 - PAD) / max(1, len(days))
    bars = "".join(
        f'<rect x="{PAD + i * width + 1:.1f}" y="{(H - 20) - (H - 32) * d["failed"] / top:.1f}" '
        f'width="{max(1.0, width - 2):.1f}" height="{(H - 32) * d["failed"] / top:.1f}" '
        f'fill="#c0392b"><title>{esc(stamp(d["day"])[:10])}: {int(d["failed"])} failed'
        "</title></rect>"
        for i, d in enumerate(days)
        if d["failed"]
    )
    first = stamp(days[0]["day"])[:10] if days else ""
    last = stamp(days[-1]["day"])[:10] if days else ""
    return (
        f'<svg id="chart-challenges" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
        'role="img" aria-label="failed challenges per day">'
        + _axis(f"{top} failed" if any(d["failed"] for d in days) else "none failed", first, last)
        + bars
        + "</svg>"
    )


def _charts(charts: dict[str, Any], now: float) -> str:
    c = charts["challenges"]
    return (
        '<h2>Charts</h2><div class="charts">'
        f"<figure>{stored_chart(charts['stored'], now)}<figcaption>Bytes stored on members' disks, "
        "redundancy included, added up over the snapshots (each snapshot's upload)."
        "</figcaption></figure>"
        f"<figure>{challenge_chart(c)}<figcaption>Failed storage challenges per day, the "
        f"last {int(c['days'])} days. Passes are only counted per member, not per day: "
        f'<span id="challenges-passed">{int(c["passed_total"])}</span> passed and '
        f'<span id="challenges-failed">{int(c["failed_total"])}</span> failed in all.'
        "</figcaption></figure></div>"
    )


def message_page(title: str, text: str) -> str:
    """A short page for 401, 403 and the like."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{esc(title)}</h1><p>{esc(text)}</p></body></html>\n"
    )
