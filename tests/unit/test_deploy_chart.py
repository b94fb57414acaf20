"""The Helm chart (deploy/helm/auditlog) renders, and what it renders is what a cluster accepts.

For the default values and each file of deploy/helm/auditlog/ci/: `helm lint --strict`, then
`helm template`, then deploy/helm/validate on the output: every object strictly decoded
against the Kubernetes API types, KEDA's objects against KEDA's CRDs, every container with
resources, probes and a non-root, read-only, unprivileged security context. The validator is
shown to fail on each kind of mistake it exists to catch.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from forward.config import parse_destinations
from tests.unit.deploy_tools import CHART, HELM_VERSION, VALIDATOR, build_validator, cached_tool

VALUES_FILES = sorted((CHART / "ci").glob("*-values.yaml"))
Manifest = list[dict[str, Any]]


@pytest.fixture(scope="module")
def helm() -> Path:
    return cached_tool("helm", HELM_VERSION)


@pytest.fixture(scope="module")
def validator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_validator(tmp_path_factory.mktemp("chart-validate"))


def run(command: list[str | Path], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in command],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def render(helm: Path, *args: str | Path) -> str:
    result = run([helm, "template", "audit", CHART, "--namespace", "audit", *args])
    assert result.returncode == 0, result.stderr
    return result.stdout


def objects(text: str) -> Manifest:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def find(manifest: Manifest, kind: str, name_suffix: str) -> dict[str, Any]:
    hits = [
        o for o in manifest if o["kind"] == kind and o["metadata"]["name"].endswith(name_suffix)
    ]
    assert len(hits) == 1, f"{kind} *{name_suffix}: {len(hits)} found"
    return hits[0]


def validate(validator: Path, text: str) -> subprocess.CompletedProcess[str]:
    return run([validator, "-crds", VALIDATOR / "crds"], stdin=text)


def test_there_are_values_files_beside_the_defaults() -> None:
    assert len(VALUES_FILES) >= 2


@pytest.mark.parametrize(
    "values", [None, *VALUES_FILES], ids=lambda v: "default" if v is None else v.name
)
def test_the_chart_lints_renders_and_validates(
    helm: Path, validator: Path, values: Path | None
) -> None:
    args: list[str | Path] = [] if values is None else ["-f", values]
    lint = run([helm, "lint", "--strict", CHART, *args])
    assert lint.returncode == 0, lint.stdout + lint.stderr
    text = render(helm, *args)
    result = validate(validator, text)
    assert result.returncode == 0, result.stderr
    assert "object(s) valid" in result.stdout


def test_the_defaults_deploy_every_part(helm: Path) -> None:
    manifest = objects(render(helm))
    kinds = sorted({o["kind"] for o in manifest})
    assert kinds == [
        "ConfigMap",
        "CronJob",
        "Deployment",
        "HorizontalPodAutoscaler",
        "Job",
        "NetworkPolicy",
        "PersistentVolumeClaim",
        "PodDisruptionBudget",
        "ScaledObject",
        "Service",
    ]
    migrate = find(manifest, "Job", "-migrate")
    assert migrate["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    # The image has no entrypoint (deploy/image/Containerfile): every container names the command.
    container = migrate["spec"]["template"]["spec"]["containers"][0]
    assert (container["command"], container["args"]) == (["auditlog"], ["migrate"])


def test_keda_scales_the_sealers_on_lag_up_to_the_partition_count(helm: Path) -> None:
    manifest = objects(render(helm, "--set", "kafka.partitions=7"))
    scaled = find(manifest, "ScaledObject", "-sealer")
    sealers = find(manifest, "Deployment", "-sealer")
    assert scaled["spec"]["scaleTargetRef"]["name"] == sealers["metadata"]["name"]
    assert scaled["spec"]["maxReplicaCount"] == 7
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == "auditlog-sealer"
    assert trigger["metadata"]["allowIdleConsumers"] == "false"
    # KEDA owns the replica count; a fixed one would fight it on every upgrade.
    assert "replicas" not in sealers["spec"]
    assert sealers["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0


def test_the_sealer_group_keda_watches_follows_the_sealers_setting(helm: Path) -> None:
    manifest = objects(render(helm, "-f", CHART / "ci" / "production-values.yaml"))
    scaled = find(manifest, "ScaledObject", "-sealer")
    assert scaled["spec"]["triggers"][0]["metadata"]["consumerGroup"] == "auditlog-sealer-prod"
    assert scaled["spec"]["triggers"][0]["authenticationRef"]["name"].endswith("-sealer")
    find(manifest, "TriggerAuthentication", "-sealer")


def kafka_env(manifest: Manifest) -> dict[str, dict[str, Any]]:
    """Each Deployment's first container's AUDITLOG_KAFKA_* security variables."""
    out = {}
    for o in manifest:
        if o["kind"] == "Deployment":
            env = o["spec"]["template"]["spec"]["containers"][0].get("env", [])
            out[o["metadata"]["name"]] = {
                e["name"]: e.get("value", e.get("valueFrom"))
                for e in env
                if e["name"].startswith("AUDITLOG_KAFKA_")
                and e["name"] != "AUDITLOG_KAFKA_BOOTSTRAP"
            }
    return out


def test_the_services_connect_to_kafka_with_the_charts_tls_and_sasl(helm: Path) -> None:
    assert all(not env for env in kafka_env(objects(render(helm))).values())  # plaintext
    secure = kafka_env(
        objects(
            render(
                helm,
                *("-f", CHART / "ci" / "production-values.yaml"),
                *("--set", "kafka.tls.clientCertificate=true"),
                *("--set", "kafka.sasl.mechanism=SCRAM-SHA-256"),
            )
        )
    )
    ingest = secure["audit-auditlog-ingest"]
    assert ingest["AUDITLOG_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert ingest["AUDITLOG_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-256"
    assert ingest["AUDITLOG_KAFKA_SASL_PASSWORD"] == {
        "secretKeyRef": {"name": "auditlog-kafka-sasl", "key": "password"}
    }
    assert ingest["AUDITLOG_KAFKA_SSL_CAFILE"] == "/etc/auditlog/kafka-tls/ca"
    assert ingest["AUDITLOG_KAFKA_SSL_KEYFILE"] == "/etc/auditlog/kafka-tls/key"
    assert secure["audit-auditlog-sealer"] == ingest
    tls_only = kafka_env(
        objects(
            render(
                helm, "--set", "kafka.tls.secretName=kafka-ca", "--set", "kafka.sasl.secretName="
            )
        )
    )
    assert tls_only["audit-auditlog-sealer"] == {
        "AUDITLOG_KAFKA_SECURITY_PROTOCOL": "SSL",
        "AUDITLOG_KAFKA_SSL_CAFILE": "/etc/auditlog/kafka-tls/ca",
    }


def test_the_forwarder_runs_only_when_enabled_with_the_destinations_it_is_given(
    helm: Path,
) -> None:
    assert not [o for o in objects(render(helm)) if o["metadata"]["name"].endswith("-forward")]
    manifest = objects(render(helm, "-f", CHART / "ci" / "production-values.yaml"))
    deployment = find(manifest, "Deployment", "-forward")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["forward"]
    env = {e["name"]: e for e in container["env"]}
    path = env["AUDITLOG_FORWARD_DESTINATIONS_FILE"]["value"]
    assert path == "/etc/auditlog/config/forward-destinations.toml"
    assert env["HOOK_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == "auditlog-forward"
    find(manifest, "PodDisruptionBudget", "-forward")
    find(manifest, "NetworkPolicy", "-forward")
    # What the pod reads is a destinations file the forwarder accepts.
    text = find(manifest, "ConfigMap", "-auditlog")["data"]["forward-destinations.toml"]
    kinds = {d.name: d.kind for d in parse_destinations(text, {"HOOK_SECRET": "s3cret"})}
    assert kinds == {"siem": "syslog", "alerts": "webhook"}


def test_the_chart_refuses_a_forwarder_without_destinations(helm: Path) -> None:
    result = run([helm, "template", "audit", CHART, "--set", "forward.enabled=true"])
    assert result.returncode != 0
    assert "forward.destinations is required" in result.stderr


def test_only_the_sealers_mount_the_signing_key(helm: Path) -> None:
    manifest = objects(render(helm))
    for o in manifest:
        if o["kind"] not in {"Deployment", "Job", "CronJob"}:
            continue
        spec = o["spec"]
        pod = (spec.get("jobTemplate", {}).get("spec") or spec)["template"]["spec"]
        secrets = {
            v["secret"]["secretName"]: v["secret"].get("items")
            for v in pod["volumes"]
            if "secret" in v
        }
        if "auditlog-signing-key" not in secrets:
            continue
        items = [i["key"] for i in secrets["auditlog-signing-key"] or []]
        if o["metadata"]["name"].endswith("-sealer"):
            assert items == ["log.skey"]
        else:
            assert items == ["log.vkey"], o["metadata"]["name"]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("kafka.partitions=0", "at '/kafka/partitions'"),
        ("sealer.keda.minReplicas=13", "cannot exceed kafka.partitions"),
        ("kafka.bootstrapServers=", "at '/kafka/bootstrapServers'"),
        ("log.origin=", "at '/log/origin'"),
        ("log.hashScheme=sha1", "at '/log/hashScheme'"),
        ("compact.entries=64M", "at '/compact/entries'"),
        ("compact.entries=0", "at '/compact/entries'"),
        # values.schema.json refuses a misspelt key rather than ignoring it.
        ("sealer.kedaa.enabled=false", "additional properties 'kedaa' not allowed"),
        ("ingest.autoscaling.targetCPU=50", "additional properties 'targetCPU' not allowed"),
    ],
)
def test_the_chart_refuses_values_that_cannot_work(helm: Path, setting: str, message: str) -> None:
    result = run([helm, "template", "audit", CHART, "--set", setting])
    assert result.returncode != 0
    assert message in result.stderr


def mutate(text: str, kind: str, suffix: str, change: Callable[[dict[str, Any]], None]) -> str:
    manifest = objects(text)
    change(find(manifest, kind, suffix))
    return str(yaml.safe_dump_all(manifest))


def sealer_container(o: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = o["spec"]["template"]["spec"]["containers"][0]
    return container


MISTAKES: list[tuple[str, str, str, Callable[[dict[str, Any]], None], str]] = [
    (
        "unknown field",
        "Deployment",
        "-ingest",
        lambda o: o["spec"].update(replica=3),
        'unknown field "spec.replica"',
    ),
    (
        "misspelt container field",
        "Deployment",
        "-sealer",
        lambda o: sealer_container(o).update(livenesProbe={}),
        'unknown field "spec.template.spec.containers[0].livenesProbe"',
    ),
    (
        "wrong type",
        "Service",
        "-query",
        lambda o: o["spec"]["ports"][0].update(port="eighty"),
        "does not decode strictly",
    ),
    (
        "unknown field in a KEDA object",
        "ScaledObject",
        "-sealer",
        lambda o: o["spec"].update(maxReplicas=3),
        'unknown field "spec.maxReplicas"',
    ),
    (
        "a KEDA CEL rule",
        "ScaledObject",
        "-sealer",
        lambda o: o["spec"].update(minReplicaCount=20, maxReplicaCount=2),
        "minReplicaCount must be less than or equal to maxReplicaCount",
    ),
    (
        "a KEDA schema type",
        "ScaledObject",
        "-sealer",
        lambda o: o["spec"].update(pollingInterval="often"),
        "spec.pollingInterval",
    ),
    (
        "a kafka trigger setting KEDA does not know",
        "ScaledObject",
        "-sealer",
        lambda o: o["spec"]["triggers"][0]["metadata"].update(lagTreshold="5"),
        '"lagTreshold" is no setting',
    ),
    (
        "no resources",
        "Deployment",
        "-sealer",
        lambda o: sealer_container(o).pop("resources"),
        'container "sealer": no CPU or memory request',
    ),
    (
        "no probe",
        "Deployment",
        "-sealer",
        lambda o: sealer_container(o).pop("readinessProbe"),
        'container "sealer": no readinessProbe',
    ),
    (
        "root",
        "Deployment",
        "-sealer",
        lambda o: sealer_container(o)["securityContext"].update(runAsNonRoot=False, runAsUser=0),
        'container "sealer": runAsNonRoot is not true',
    ),
    (
        "writable root filesystem",
        "Deployment",
        "-query",
        lambda o: sealer_container(o)["securityContext"].pop("readOnlyRootFilesystem"),
        'container "query": readOnlyRootFilesystem is not true',
    ),
    (
        "a probe on a port the container does not name",
        "Deployment",
        "-ingest",
        lambda o: sealer_container(o)["livenessProbe"]["httpGet"].update(port="admin"),
        'uses port "admin"',
    ),
    (
        "a selector that matches nothing",
        "PodDisruptionBudget",
        "-sealer",
        lambda o: o["spec"]["selector"]["matchLabels"].update(
            {"app.kubernetes.io/component": "sealers"}
        ),
        "its selector matches no pod template",
    ),
    (
        "an unbounded Job",
        "Job",
        "-migrate",
        lambda o: o["spec"].pop("activeDeadlineSeconds"),
        "without activeDeadlineSeconds",
    ),
]


@pytest.mark.parametrize(
    ("kind", "suffix", "change", "expected"),
    [m[1:] for m in MISTAKES],
    ids=[m[0] for m in MISTAKES],
)
def test_the_validator_catches(
    helm: Path,
    validator: Path,
    kind: str,
    suffix: str,
    change: Callable[[dict[str, Any]], None],
    expected: str,
) -> None:
    result = validate(validator, mutate(render(helm), kind, suffix, change))
    assert result.returncode == 1, result.stdout
    assert expected in result.stderr


def test_the_validator_refuses_a_kind_it_does_not_know(validator: Path) -> None:
    text = "apiVersion: example.com/v1\nkind: Gadget\nmetadata:\n  name: g\n"
    result = validate(validator, text)
    assert result.returncode == 1
    assert "unknown kind" in result.stderr


def test_the_validator_refuses_duplicate_keys(validator: Path) -> None:
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  name: b\n"
    result = validate(validator, text)
    assert result.returncode == 1
    assert "not valid YAML" in result.stderr


def test_a_restricted_api_still_lets_the_monitor_read_the_query_service(helm: Path) -> None:
    manifest = objects(render(helm, "-f", CHART / "ci" / "production-values.yaml"))
    policy = find(manifest, "NetworkPolicy", "-query")
    sources = [peer for rule in policy["spec"]["ingress"] for peer in rule.get("from", [])]
    monitor = {"podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "auditlog",
        "app.kubernetes.io/instance": "audit",
        "app.kubernetes.io/component": "monitor",
    }}}  # fmt: skip
    assert monitor in sources
    (egress,) = [
        rule
        for rule in find(manifest, "NetworkPolicy", "-monitor")["spec"]["egress"]
        if "podSelector" in rule.get("to", [{}])[0]
    ]
    assert egress["ports"] == [{"port": 8001}]


def test_the_search_blocks_are_compacted_weekly_unless_turned_off(helm: Path) -> None:
    manifest = objects(render(helm))
    job = find(manifest, "CronJob", "-compact")
    assert job["spec"]["schedule"] == "41 3 * * 0"
    assert job["spec"]["concurrencyPolicy"] == "Forbid"
    container = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert (container["command"], container["args"]) == (
        ["auditlog"],
        ["search-index", "compact"],
    )
    env = {e["name"] for e in container["env"]}
    assert "AUDITLOG_DATABASE_URL" in env
    # It serves nothing: no ingress at all.
    assert find(manifest, "NetworkPolicy", "-compact")["spec"]["ingress"] == []
    sized = objects(render(helm, "--set", "compact.entries=128000000"))
    container = find(sized, "CronJob", "-compact")["spec"]["jobTemplate"]["spec"]["template"][
        "spec"
    ]["containers"][0]
    assert container["args"] == ["search-index", "compact", "--entries", "128000000"]
    off = objects(render(helm, "--set", "compact.enabled=false"))
    assert not [o for o in off if o["metadata"]["name"].endswith("-compact")]
