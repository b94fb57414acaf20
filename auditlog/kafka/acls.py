"""The Kafka ACLs each part of auditlog needs, and no more (docs/kafka-security.md).

Kafka's ``Describe`` is implied by ``Read`` and ``Write``, and since Kafka 3.0 an idempotent
producer needs no ``IdempotentWrite`` on the cluster once it may ``Write`` to some topic: the
lists hold only what is not implied. The local stack grants exactly these (its SASL_SSL mode) and
the e2e test runs the pipeline under them, so a list that misses something fails there.
"""

from __future__ import annotations

from dataclasses import dataclass

from auditlog.kafka.clients import dlq_topic

CLUSTER = "kafka-cluster"  # the one name a CLUSTER resource has


@dataclass(frozen=True, slots=True)
class Acl:
    """An ALLOW rule for one principal: ``operation`` on a LITERAL resource, from any host."""

    resource_type: str  # TOPIC, GROUP or CLUSTER
    resource_name: str
    operation: str  # READ, WRITE, CREATE, DESCRIBE

    def kafka_acls_arguments(self) -> list[str]:
        """This rule's part of a ``kafka-acls --add --allow-principal User:P`` command."""
        option = {"TOPIC": "--topic", "GROUP": "--group", "CLUSTER": "--cluster"}
        resource = [option[self.resource_type]]
        if self.resource_type != "CLUSTER":
            resource.append(self.resource_name)
        return [*resource, "--operation", self.operation.capitalize()]


def producer_acls(topic: str) -> list[Acl]:
    """Ingest, the producer library and any client that publishes events."""
    return [Acl("TOPIC", topic, "WRITE")]


def sealer_acls(topic: str, group: str) -> list[Acl]:
    """Consume the events topic in the sealers' group, write dead letters."""
    return [
        Acl("TOPIC", topic, "READ"),
        Acl("GROUP", group, "READ"),
        Acl("TOPIC", dlq_topic(topic), "WRITE"),
    ]


def setup_acls(topic: str) -> list[Acl]:
    """Create the topics (``ensure_topics``, `auditlog up`): count the brokers, create and
    describe both topics."""
    return [
        Acl("CLUSTER", CLUSTER, "DESCRIBE"),
        *(
            Acl("TOPIC", name, operation)
            for name in (topic, dlq_topic(topic))
            for operation in ("CREATE", "DESCRIBE")
        ),
    ]
