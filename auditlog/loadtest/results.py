"""The result of a run, as a plain dict: the JSON report, from which the HTML report and the
threshold checks are made.

It holds the figures of the whole run, of each operation and of each second (by completion
time), the latency histogram's buckets, the sealed latency's samples, and the generator's own
limits: the CPU it used (Python drives its requests from one core), the request rate one core
would drive at that CPU per request (its ceiling on this machine; a floor at low rates, where
each request costs more), and how many requests started late, with a warning when the
generator, not the service, set the pace.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from auditlog.loadtest.engine import Run
from auditlog.loadtest.options import Config
from auditlog.loadtest.sealing import SealSampler
from auditlog.loadtest.tally import LATE_SECONDS, Counts, Tally

RESULT_VERSION = 1
# Above this share of one core the generator is near its ceiling: its timers fire late and its
# reads of answers queue behind its sends.
_BUSY_CPU = 0.85


def _counts(c: Counts) -> dict[str, Any]:
    return {
        "requests": c.requests,
        "ok": c.ok,
        "failed": c.failed,
        "events": c.events,
        "errors": dict(sorted(c.errors.items(), key=lambda kv: -kv[1])),
        "latency_ms": c.latency.summary_ms(),
    }


def _timeline(t: Tally) -> list[dict[str, Any]]:
    out = []
    for second in range(max(len(t.seconds), len(t.offered))):
        c = t.seconds[second] if second < len(t.seconds) else Counts()
        row: dict[str, Any] = {
            "second": second,
            "offered": t.offered[second] if second < len(t.offered) else 0,
            "requests": c.requests,
            "ok": c.ok,
            "events": c.events,
            "errors": c.errors,
            "late": t.late_by_second[second] if second < len(t.late_by_second) else 0,
        }
        if c.requests:
            row |= {
                "p50_ms": c.latency.percentile(50) / 1000,
                "p99_ms": c.latency.percentile(99) / 1000,
                "max_ms": c.latency.max / 1000,
            }
        out.append(row)
    return out


def generator_figures(t: Tally, max_in_flight: int, duration: float, cpu: float) -> dict[str, Any]:
    """The generator's CPU, ceiling and late sends, with a warning saying why sends were late
    (the service, the generator's CPU, or the machine) when more than 1 % were."""
    share = cpu / duration if duration > 0 else 0.0
    ceiling = t.total.requests / cpu if cpu > 0 else None
    late_share = t.late / t.total.requests if t.total.requests else 0.0
    warnings = []
    # A handful of late sends in a short run is noise, not a generator at its limit.
    if late_share > 0.01 and t.late >= 5:
        if t.waited_for_slot:
            why = (
                f"{t.waited_for_slot:,} found {max_in_flight} requests already out"
                " (--max-in-flight): the service answered too slowly for the planned rate"
            )
        elif share >= _BUSY_CPU:
            why = (
                f"the generator is CPU-bound ({share:.0%} of one core; it drives about"
                f" {ceiling or 0:,.0f} requests/s on this machine): run it on another machine,"
                " or split the load"
            )
        else:
            why = (
                f"the generator's event loop was held up, though it used only {share:.0%} of"
                " a core: other processes on this machine compete for its CPU"
            )
        warnings.append(
            f"{t.late:,} of {t.total.requests:,} requests ({late_share:.1%}) started more than"
            f" {LATE_SECONDS * 1000:g} ms after their due time (at most {t.max_lag * 1000:,.0f}"
            f" ms late): {why}. Their latencies include the wait, but fewer requests were"
            " offered than planned while it lasted."
        )
    elif share >= _BUSY_CPU:
        warnings.append(
            f"the generator used {share:.0%} of one core: it is near its ceiling of about"
            f" {ceiling or 0:,.0f} requests/s on this machine"
        )
    return {
        "cpu_s": round(cpu, 3),
        "cpu_share": round(share, 3),
        "ceiling_requests_per_s": round(ceiling) if ceiling else None,
        "late_requests": t.late,
        "late_share": round(late_share, 5),
        "late_after_ms": LATE_SECONDS * 1000,
        "max_lag_ms": round(t.max_lag * 1000, 3),
        "waited_for_slot": t.waited_for_slot,
        "warnings": warnings,
    }


def result(
    config: Config,
    run: Run,
    duration: float,
    cpu: float,
    started_at: datetime,
    sampler: SealSampler | None,
) -> dict[str, Any]:
    t = run.tally
    # No tokens (reports are shared as CI artifacts), and only the settings this run used.
    unused = {"token", "read_token", "plan"}
    unused |= {"concurrency", "seconds"} if config.plan is not None else {"max_in_flight"}
    if config.scenario not in ("bulk", "async", "mixed"):
        unused.add("bulk")
    if config.scenario != "kafka":
        unused |= {"kafka_bootstrap", "topic"}
    settings = {k: v for k, v in asdict(config).items() if k not in unused}
    plan = config.plan
    planned: dict[str, Any] = {"mode": "open" if plan is not None else "closed"}
    if plan is not None:
        planned |= {
            "start_rate": plan.start_rate,
            "stages": [{"seconds": s.seconds, "target_rate": s.target} for s in plan.stages],
            "seconds": plan.seconds,
            "requests": plan.planned_requests,
            "peak_rate": plan.peak_rate,
        }
    else:
        planned |= {"concurrency": config.concurrency, "seconds": config.seconds}
    per_s = max(duration, 1e-9)
    sealed = sampler.summary() if sampler is not None else None
    return {
        "tool": "auditlog loadtest",
        "version": RESULT_VERSION,
        "started_at": started_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "scenario": config.scenario,
        "config": settings,
        "plan": planned,
        "duration_s": round(duration, 3),
        "stopped_early": run.stopped_early,
        "stopped_failing": run.failing,
        **_counts(t.total),
        "error_rate": t.total.failed / t.total.requests if t.total.requests else 0.0,
        "requests_per_s": t.total.requests / per_s,
        "ok_requests_per_s": t.total.ok / per_s,
        "events_per_s": t.total.events / per_s,
        "operations": {name: _counts(c) for name, c in sorted(t.operations.items())},
        "sealed": sealed,
        "generator": generator_figures(t, config.max_in_flight, duration, cpu),
        "timeline": _timeline(t),
        "histogram": t.total.latency.to_json(),
    }


def figures(res: dict[str, Any]) -> dict[str, float | None]:
    """The figures thresholds apply to (:mod:`auditlog.loadtest.thresholds`)."""
    latency = res["latency_ms"]
    sealed = (res.get("sealed") or {}).get("latency_ms", {})
    return {
        "latency_p50_ms": latency.get("p50"),
        "latency_p99_ms": latency.get("p99"),
        "error_rate": res["error_rate"],
        "ok_requests_per_s": res["ok_requests_per_s"],
        "events_per_s": res["events_per_s"],
        "sealed_p99_ms": sealed.get("p99"),
    }
