"""The local stack's CA and its SASL_SSL listener's broker properties."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from auditlog.devstack import kafka_sasl
from auditlog.devstack.config import StackConfig, StackError
from auditlog.devstack.kafka import render_server_properties
from auditlog.devstack.tls import ensure_certificates


def test_certificates_chain_to_the_ca_and_name_loopback(tmp_path: Path) -> None:
    files = ensure_certificates(tmp_path)
    (ca,) = x509.load_pem_x509_certificates(files.ca_cert.read_bytes())
    broker, chained_ca = x509.load_pem_x509_certificates(files.broker_keystore.read_bytes())
    (client,) = x509.load_pem_x509_certificates(files.client_cert.read_bytes())
    assert chained_ca == ca
    for leaf in (broker, client):
        leaf.verify_directly_issued_by(ca)
    names = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    usage = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in usage
    assert b"BEGIN PRIVATE KEY" in files.broker_keystore.read_bytes()
    for key in (files.ca_key, files.client_key, files.broker_keystore):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_certificates_are_kept_until_near_expiry(tmp_path: Path) -> None:
    first = ensure_certificates(tmp_path).ca_cert.read_bytes()
    assert ensure_certificates(tmp_path).ca_cert.read_bytes() == first


def _properties(text: str) -> dict[str, str]:
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_the_sasl_ssl_listener_is_added_beside_plaintext(tmp_path: Path) -> None:
    cfg = StackConfig(
        home=tmp_path, kafka_port=29092, controller_port=29093, kafka_sasl_ssl_port=29094
    )
    props = _properties(render_server_properties(cfg))
    assert props["listeners"] == (
        "PLAINTEXT://127.0.0.1:29092,SASL_SSL://127.0.0.1:29094,CONTROLLER://127.0.0.1:29093"
    )
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:29092,SASL_SSL://127.0.0.1:29094"
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["sasl.enabled.mechanisms"] == "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"
    assert props["ssl.keystore.type"] == "PEM"
    assert props["ssl.client.auth"] == "requested"
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert props["super.users"] == "User:ANONYMOUS;User:auditlog"
    plain = props["listener.name.sasl_ssl.plain.sasl.jaas.config"]
    arguments = kafka_sasl.format_arguments(cfg)
    for user in ("auditlog", "auditlog-ingest", "auditlog-sealer", "auditlog-setup"):
        secret = kafka_sasl.password(cfg, user)
        assert f'user_{user}="{secret}"' in plain
        for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
            assert f"{mechanism}=[name={user},password={secret}]" in arguments
    secret = kafka_sasl.password(cfg)
    env = kafka_sasl.client_environment(cfg)
    assert env["AUDITLOG_KAFKA_BOOTSTRAP"] == "127.0.0.1:29094"
    assert env["AUDITLOG_KAFKA_SASL_PASSWORD"] == secret


def test_the_password_is_made_once_and_kept_private(tmp_path: Path) -> None:
    cfg = StackConfig(home=tmp_path)
    secret = kafka_sasl.password(cfg)
    assert len(secret) == 32 and kafka_sasl.password(cfg) == secret
    assert kafka_sasl.password(cfg, "auditlog-sealer") != secret
    path = tmp_path / "kafka" / "sasl" / "auditlog.password"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_storage_formatted_without_scram_users_is_named(tmp_path: Path) -> None:
    data = tmp_path / "kafka" / "data"
    data.mkdir(parents=True)
    (data / "meta.properties").write_text("version=1\n")
    cfg = StackConfig(home=tmp_path, kafka_sasl_ssl_port=29094)
    with pytest.raises(StackError, match="formatted before the stack made SCRAM users"):
        render_server_properties(cfg)
    kafka_sasl.mark_formatted(data)
    assert "SASL_SSL://" in render_server_properties(cfg)


def test_the_sasl_ssl_port_must_differ_from_the_others(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="AUDITLOG_STACK_KAFKA_SASL_SSL_PORT=19092"):
        StackConfig(home=tmp_path, kafka_sasl_ssl_port=19092)


def test_a_three_broker_cluster_replicates_three_times_and_needs_two() -> None:
    cfg = StackConfig(home=Path("/srv/al"), kafka_port=29092, controller_port=29093, brokers=3)
    assert cfg.kafka_bootstrap == "127.0.0.1:29092,127.0.0.1:29192,127.0.0.1:29292"
    voters = "1@127.0.0.1:29093,2@127.0.0.1:29193,3@127.0.0.1:29293"
    for node in (1, 2, 3):
        props = _properties(render_server_properties(cfg, node))
        assert props["node.id"] == str(node)
        assert props["controller.quorum.voters"] == voters
        port = 29092 + 100 * (node - 1)
        assert props["listeners"] == (
            f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{port + 1}"
        )
        for key in ("default.replication.factor", "offsets.topic.replication.factor"):
            assert props[key] == "3"
        assert props["min.insync.replicas"] == props["transaction.state.log.min.isr"] == "2"
    assert _properties(render_server_properties(cfg, 2))["log.dirs"] == (
        "/srv/al/kafka/node-2/data"
    )


def test_the_broker_count_is_one_or_three_and_fixed_once_formatted(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="AUDITLOG_STACK_KAFKA_BROKERS must be 1 or 3"):
        StackConfig(home=tmp_path, brokers=2)
    with pytest.raises(StackError, match="ports would pass 65535"):
        StackConfig(home=tmp_path, kafka_port=65400, controller_port=65401, brokers=3)
    # Node 2's client port (5000 + 100) is node 1's controller port: the clash is named.
    with pytest.raises(StackError, match="node 2"):
        StackConfig(home=tmp_path, kafka_port=5000, controller_port=5100, brokers=3)
