"""The alert rules and the dashboard use only metrics the services export.

Metric names are parsed out of every PromQL expression of deploy/prometheus/auditlog.rules.yml
and deploy/grafana/auditlog.json, and compared with the names the source tree registers
(prometheus_client's Counter, Gauge, Histogram, Summary, Info and Enum constructors, with the
suffixes each adds; or a string that is exactly a metric's name, as a textfile writer holds),
so renaming a metric in the code without the rules and the dashboard fails here. Every alert
links the runbook section that answers it.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from tests.unit.deploy_tools import DEPLOY, ROOT

SOURCES = ("auditlog", "ingest", "sealer", "query", "forward")
RULES_FILE = DEPLOY / "prometheus" / "auditlog.rules.yml"
DASHBOARD = DEPLOY / "grafana" / "auditlog.json"
RUNBOOK = DEPLOY / "runbooks" / "alerts.md"

# What each constructor exposes for a metric named N (prometheus_client's conventions).
SUFFIXES = {
    "Counter": ("_total",),
    "Gauge": ("",),
    "Histogram": ("_bucket", "_sum", "_count"),
    "Summary": ("_sum", "_count", ""),
    "Info": ("_info",),
    "Enum": ("",),
}
KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset", "atan2", "inf", "nan",
}  # fmt: skip


def name_pattern(node: ast.JoinedStr) -> re.Pattern[str] | None:
    """An f-string metric name (``f"auditlog_{job}_last_run_success"``) as a pattern where each
    placeholder is one word; None when too little of it is fixed to say which metric it is."""
    parts: list[str] = []
    fixed = ""
    for value in node.values:
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            parts.append(re.escape(value.value))
            fixed += value.value
        else:
            parts.append("[a-z0-9]+")
    if not fixed.startswith("auditlog_") or len(re.sub(r"[^a-z]", "", fixed)) < len("auditlog") + 6:
        return None
    return re.compile("".join(parts))


def exported_metrics() -> tuple[set[str], list[re.Pattern[str]]]:
    """Every sample name the source tree's prometheus_client constructors expose, every string
    constant that is a whole auditlog metric name (metrics written as text), and the patterns of
    names built from f-strings."""
    names: set[str] = set()
    patterns: list[re.Pattern[str]] = []
    for package in SOURCES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (
                    isinstance(node, ast.Constant)
                    and isinstance(node.value, str)
                    and re.fullmatch(r"auditlog_[a-z0-9_]+", node.value)
                ):
                    names.add(node.value)
                if not isinstance(node, ast.Call) or not node.args:
                    continue
                func = node.func
                kind = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                first = node.args[0]
                if kind in SUFFIXES and isinstance(first, ast.JoinedStr):
                    pattern = name_pattern(first)
                    if pattern is not None:
                        patterns.extend(
                            re.compile(pattern.pattern + re.escape(suffix))
                            for suffix in SUFFIXES[kind]
                        )
                    continue
                if kind not in SUFFIXES or not isinstance(first, ast.Constant):
                    continue
                if not isinstance(first.value, str):
                    continue
                base = first.value
                if kind == "Counter":
                    base = base.removesuffix("_total")
                names.update(base + suffix for suffix in SUFFIXES[kind])
    return names, patterns


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords, labels left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals, label values among them
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges and subqueries
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"(?<![\w.$])([A-Za-z_:][\w:]*)(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if call is None and name not in KEYWORDS and not re.fullmatch(r"\d\w*", name):
            names.add(name)
    return names


def load_rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    return [rule for group in data["groups"] for rule in group["rules"]]


def dashboard_exprs() -> Iterator[tuple[str, str]]:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    for panel in data["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]
    for variable in data["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            inner = re.fullmatch(r"label_values\((.*),\s*\w+\)", query["query"])
            assert inner, query
            yield f"variable {variable['name']}", inner.group(1)


def test_the_expression_parser_finds_metrics_only() -> None:
    expr = (
        'sum by (log) (rate(auditlog_sealer_events_total{log=~"$log", x="a b"}[5m]))'
        " / on (log) group_left () max(auditlog:sealer_lag_records:max) > 2 * 86400"
        " and time() - up offset 5m"
    )
    assert metric_names(expr) == {
        "auditlog_sealer_events_total",
        "auditlog:sealer_lag_records:max",
        "up",
    }


def test_the_source_scan_sees_the_exported_metrics() -> None:
    names, _ = exported_metrics()
    # Present since the first sealer: if these vanish, the scan is broken, not the code.
    assert {"auditlog_sealer_events_total", "auditlog_sealer_seal_seconds_bucket"} <= names
    assert "auditlog_sealer_events_total_total" not in names


def test_fstring_names_become_patterns_only_when_specific() -> None:
    def pattern(source: str) -> re.Pattern[str] | None:
        node = ast.parse(source, mode="eval").body
        assert isinstance(node, ast.JoinedStr)
        return name_pattern(node)

    built = pattern('f"auditlog_{job}_last_run_success"')
    assert built is not None
    assert built.fullmatch("auditlog_audit_last_run_success")
    assert not built.fullmatch("auditlog_audit_last_run_successes")
    assert pattern('f"auditlog_{job}_{name}"') is None


def test_rules_and_dashboard_use_only_exported_metrics() -> None:
    exported, patterns = exported_metrics()
    rules = load_rules()
    recorded = {rule["record"] for rule in rules if "record" in rule}
    used: dict[str, set[str]] = {}
    for rule in rules:
        where = f"rule {rule.get('record') or rule.get('alert')}"
        for name in metric_names(rule["expr"]):
            used.setdefault(name, set()).add(where)
    for where, expr in dashboard_exprs():
        for name in metric_names(expr):
            used.setdefault(name, set()).add(f"panel {where!r}")
    unknown = {
        name: sorted(places)
        for name, places in sorted(used.items())
        if name not in exported
        and name not in recorded
        and not any(p.fullmatch(name) for p in patterns)
    }
    report = "\n".join(f"  {name}: {', '.join(places)}" for name, places in unknown.items())
    assert not unknown, f"metrics no source module exports:\n{report}"


def runbook_anchors() -> set[str]:
    anchors = set()
    for line in RUNBOOK.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


@pytest.mark.parametrize(
    "rule", [r for r in load_rules() if "alert" in r], ids=lambda r: r["alert"]
)
def test_every_alert_links_its_runbook(rule: dict[str, Any]) -> None:
    url = rule["annotations"]["runbook_url"]
    path, _, anchor = url.partition("#")
    assert path == "deploy/runbooks/alerts.md"
    assert anchor == rule["alert"].lower()
    assert anchor in runbook_anchors()
    assert rule["labels"]["severity"] in {"critical", "warning"}
