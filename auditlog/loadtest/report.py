"""The JSON and HTML reports of a run, written side by side.

``report.json`` is the result as :mod:`auditlog.loadtest.runner` builds it (plus the threshold
checks): figures, per-second timeline and the latency histogram's buckets, for scripts and for
comparing runs. ``report.html`` is one self-contained page (inline CSS and SVG, no script, no
fetched asset) that opens from a file, a CI artifact or an e-mail: verdict, figures, warnings,
charts of throughput, p50/p99 and errors over time, the latency histogram, and per-operation
and per-error tables.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any, Final

import orjson

from auditlog.loadtest.histogram import bucket_bounds
from auditlog.loadtest.plots import line_chart, log_histogram, stacked_bars
from auditlog.loadtest.thresholds import Check

_TOP_ERROR_KINDS: Final = 6

_CSS: Final = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;
max-width:820px;color:#222;padding:0 12px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.sub{color:#666}.pass{color:#1a7f37;font-weight:600}.fail{color:#cf222e;font-weight:600}
table{border-collapse:collapse;margin:6px 0}td,th{padding:3px 10px;border-bottom:1px solid #ddd;
text-align:right}th:first-child,td:first-child{text-align:left}
.warn{background:#fff8c5;border:1px solid #d4a72c;padding:8px 12px;margin:8px 0}
.chart{width:100%;height:auto;margin:6px 0 14px}
.chart .title{font-size:13px;font-weight:600}.chart .tick{font-size:11px;fill:#555}
.chart .axis{font-size:11px;fill:#333}.chart .grid{stroke:#e5e5e5}
"""


def write(res: dict[str, Any], checks: list[Check], directory: Path) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.html`` into ``directory`` (made if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    full = {**res, **verdict(checks, failing=bool(res.get("stopped_failing")))}
    json_path = directory / "report.json"
    json_path.write_bytes(orjson.dumps(full, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    html_path = directory / "report.html"
    html_path.write_text(html(full), encoding="utf-8")
    return json_path, html_path


def verdict(checks: list[Check], *, failing: bool = False) -> dict[str, Any]:
    """The thresholds' checks, and whether the run passed (``failing``: stopped on errors)."""
    return {
        "thresholds": [
            {"option": c.option, "bound": c.bound, "actual": c.actual, "passed": c.passed}
            for c in checks
        ],
        "passed": not failing and all(c.passed for c in checks),
    }


def _table(head: list[str], rows: list[list[str]]) -> str:
    cells = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


def _ms(summary: dict[str, Any], key: str) -> str:
    value = summary.get(key)
    return "-" if value is None else f"{value:,.1f}"


def _charts(res: dict[str, Any]) -> list[str]:
    timeline = res["timeline"]
    xs = [row["second"] for row in timeline]
    throughput = line_chart(
        "Throughput",
        "seconds into the run",
        "requests/s",
        [
            ("planned", [(row["second"], row["offered"]) for row in timeline]),
            ("answered ok", [(row["second"], row["ok"]) for row in timeline]),
        ],
    )
    latency = line_chart(
        "Latency from the intended send time",
        "seconds into the run",
        "ms",
        [
            ("p50", [(r["second"], r["p50_ms"]) for r in timeline if "p50_ms" in r]),
            ("p99", [(r["second"], r["p99_ms"]) for r in timeline if "p99_ms" in r]),
        ],
    )
    kinds = sorted(res["errors"], key=lambda k: -res["errors"][k])
    shown, rest = kinds[:_TOP_ERROR_KINDS], kinds[_TOP_ERROR_KINDS:]
    stacks = [(k, [row["errors"].get(k, 0) for row in timeline]) for k in shown]
    if rest:
        stacks.append(("other", [sum(row["errors"].get(k, 0) for k in rest) for row in timeline]))
    errors = stacked_bars("Errors", "seconds into the run", "errors/s", xs, stacks)
    hist = res["histogram"]["counts"]
    buckets = [
        (bucket_bounds(int(b))[0] / 1000, (bucket_bounds(int(b))[1] + 1) / 1000, n)
        for b, n in sorted(hist.items(), key=lambda kv: int(kv[0]))
    ]
    histogram = log_histogram("Latency histogram (all requests)", buckets)
    return [throughput, latency, histogram, errors]


def html(res: dict[str, Any]) -> str:
    plan = res["plan"]
    if plan["mode"] == "open":
        stages = ", ".join(f"{s['seconds']:g} s → {s['target_rate']:g}/s" for s in plan["stages"])
        shape = f"open loop from {plan['start_rate']:g} requests/s: {stages}"
    else:
        shape = f"closed loop, {plan['concurrency']} clients, {plan['seconds']:g} s"
    passed = res.get("passed", True)
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>auditlog loadtest: {escape(res['scenario'])}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>auditlog loadtest: {escape(res['scenario'])}"
        f" <span class={'pass' if passed else 'fail'}>{'PASSED' if passed else 'FAILED'}</span>"
        "</h1>",
        f"<div class=sub>{escape(res['started_at'])} · {escape(res['config']['url'])} ·"
        f" {escape(shape)}</div>",
    ]
    if res["stopped_early"]:
        parts.append(f"<div class=warn>Stopped early: {escape(res['stopped_early'])}</div>")
    parts += [f"<div class=warn>{escape(w)}</div>" for w in res["generator"]["warnings"]]
    lat = res["latency_ms"]
    parts.append("<h2>Summary</h2>")
    parts.append(
        _table(
            ["", "value"],
            [
                ["duration", f"{res['duration_s']:,.1f} s"],
                [
                    "requests (ok / failed)",
                    f"{res['requests']:,} ({res['ok']:,} / {res['failed']:,})",
                ],
                ["error rate", f"{res['error_rate']:.2%}"],
                [
                    "throughput",
                    f"{res['ok_requests_per_s']:,.1f} ok requests/s,"
                    f" {res['events_per_s']:,.1f} events/s",
                ],
                [
                    "latency p50 / p90 / p99 / p99.9 / max",
                    " / ".join(_ms(lat, k) for k in ("p50", "p90", "p99", "p99.9", "max")) + " ms",
                ],
            ],
        )
    )
    if res.get("thresholds"):
        rows = [
            [
                escape(t["option"]),
                f"{t['bound']:g}",
                "not measured" if t["actual"] is None else f"{t['actual']:,.4g}",
                f"<span class={'pass' if t['passed'] else 'fail'}>"
                f"{'ok' if t['passed'] else 'FAILED'}</span>",
            ]
            for t in res["thresholds"]
        ]
        parts += ["<h2>Thresholds</h2>", _table(["limit", "bound", "actual", ""], rows)]
    sealed = res.get("sealed")
    if sealed:
        parts.append("<h2>Logged → sealed</h2>")
        if sealed.get("unavailable"):
            parts.append(f"<div class=warn>{escape(sealed['unavailable'])}</div>")
        s = sealed["latency_ms"]
        parts.append(
            _table(
                ["sampled", "sealed", "unsealed", "p50 ms", "p90 ms", "p99 ms", "max ms"],
                [
                    [
                        str(sealed["sampled"]),
                        str(sealed["sealed"]),
                        str(sealed["unsealed"]),
                        *(_ms(s, k) for k in ("p50", "p90", "p99", "max")),
                    ]
                ],
            )
        )
        parts.append(
            "<div class=sub>From the acknowledgement to the first receipt; each sampled event's"
            " receipt is polled every 20 ms for 0.5 s, then every 100 ms, then every 500 ms"
            " after 2 s.</div>"
        )
    parts.append("<h2>Over time</h2>")
    parts += _charts(res)
    parts.append("<h2>Operations</h2>")
    parts.append(
        _table(
            ["operation", "requests", "failed", "events", "p50 ms", "p99 ms", "max ms"],
            [
                [
                    escape(name),
                    f"{op['requests']:,}",
                    f"{op['failed']:,}",
                    f"{op['events']:,}",
                    *(_ms(op["latency_ms"], k) for k in ("p50", "p99", "max")),
                ]
                for name, op in res["operations"].items()
            ],
        )
    )
    if res["errors"]:
        parts.append("<h2>Errors by kind</h2>")
        parts.append(
            _table(["kind", "count"], [[escape(k), f"{n:,}"] for k, n in res["errors"].items()])
        )
    gen = res["generator"]
    parts.append("<h2>Generator</h2>")
    parts.append(
        _table(
            ["", "value"],
            [
                ["CPU", f"{gen['cpu_s']:,.1f} s ({gen['cpu_share']:.0%} of one core)"],
                [
                    "ceiling on this machine (one core at this CPU per request)",
                    "-"
                    if gen["ceiling_requests_per_s"] is None
                    else f"≈ {gen['ceiling_requests_per_s']:,} requests/s",
                ],
                [
                    f"late sends (> {gen['late_after_ms']:g} ms)",
                    f"{gen['late_requests']:,} (max {gen['max_lag_ms']:,.1f} ms)",
                ],
            ],
        )
    )
    config = res["config"]
    parts.append("<h2>Settings</h2>")
    parts.append(_table(["", "value"], [[escape(k), escape(str(v))] for k, v in config.items()]))
    parts.append("</body></html>")
    return "\n".join(parts)
