"""docs/kafka-security.md lists exactly the ACLs auditlog/kafka/acls.py defines (the ones the
SASL_SSL e2e test runs the pipeline under), for the default topic and sealer group."""

from __future__ import annotations

import re
from pathlib import Path

from auditlog.kafka.acls import Acl, producer_acls, sealer_acls, setup_acls

DOC = Path(__file__).resolve().parents[2] / "docs" / "kafka-security.md"


def _command(principal: str, acl: Acl) -> str:
    arguments = " ".join(acl.kafka_acls_arguments())
    return f"kafka-acls.sh $ADMIN --add --allow-principal User:{principal} {arguments}"


def test_the_page_lists_each_services_acls_and_nothing_else() -> None:
    expected = {
        _command(principal, acl)
        for principal, acls in (
            ("auditlog-ingest", producer_acls("audit.events")),
            ("auditlog-sealer", sealer_acls("audit.events", "auditlog-sealer")),
            ("auditlog-setup", setup_acls("audit.events")),
        )
        for acl in acls
    }
    listed = set(re.findall(r"^kafka-acls\.sh .*$", DOC.read_text(), flags=re.MULTILINE))
    assert listed == expected


def test_a_cluster_acl_names_no_resource() -> None:
    assert Acl("CLUSTER", "kafka-cluster", "DESCRIBE").kafka_acls_arguments() == [
        "--cluster",
        "--operation",
        "Describe",
    ]
