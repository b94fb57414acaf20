"""The Grafana dashboard (deploy/grafana/auditlog.json) is laid out as Grafana would show it: each
panel on the 24-column grid without overlapping another, its queries on the dashboard's
Prometheus data source variable, each query with its own refId, and each of the parts the
dashboard is for present. Which metrics it queries is checked in test_deploy_metrics.py."""

from __future__ import annotations

import json
from typing import Any

from tests.unit.deploy_tools import DEPLOY

DASHBOARD = DEPLOY / "grafana" / "auditlog.json"


def load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def cells(panel: dict[str, Any]) -> set[tuple[int, int]]:
    pos = panel["gridPos"]
    return {
        (x, y)
        for x in range(pos["x"], pos["x"] + pos["w"])
        for y in range(pos["y"], pos["y"] + pos["h"])
    }


def test_panels_fit_the_grid_without_overlapping() -> None:
    taken: dict[tuple[int, int], str] = {}
    for panel in load()["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for cell in cells(panel):
            assert cell not in taken, f"{panel['title']!r} overlaps {taken[cell]!r}"
            taken[cell] = panel["title"]


def test_every_query_uses_the_data_source_variable() -> None:
    data = load()
    variables = {v["name"]: v for v in data["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids))
    for panel in data["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            assert target["expr"].strip(), panel["title"]


def test_the_dashboard_shows_what_it_is_for() -> None:
    rows = {p["title"] for p in load()["panels"] if p["type"] == "row"}
    assert {"Ingest", "Sealers", "Witnesses", "Query", "Audit and monitor"} <= rows
    exprs = " ".join(t["expr"] for p in load()["panels"] for t in p.get("targets", []))
    for metric in (
        "auditlog_ingest_events_total",  # ingest rate
        'auditlog_http_request_duration_seconds_bucket{service="ingest"}',  # ingest latency
        "auditlog_sealer_events_total",  # sealer throughput
        "auditlog_sealer_lag_records",  # lag per partition
        "auditlog_sealer_seal_seconds_bucket",  # seal latency
        "auditlog_sealer_checkpoint_age_seconds",  # checkpoint age
        "auditlog_sealer_dead_letters_total",  # DLQ
        'auditlog_http_request_duration_seconds_bucket{service="query"}',  # query latency
    ):
        assert metric in exprs, metric
