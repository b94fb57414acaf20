"""Grant Kafka ACLs on the local stack's broker, through its plaintext listener.

aiokafka's admin client has no ACL calls, and a ``kafka-acls`` run costs a JVM start per
principal: this sends the one CreateAcls request (version 1, the oldest Kafka 4 still serves)
itself, as the listener's ``ANONYMOUS`` super user, the way `auditlog.devstack.kafka` asks
ApiVersions. Only for the stack's loopback broker: deployments grant with their own tooling.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence

from auditlog.devstack.config import HOST, StackError
from auditlog.devstack.kafka import recv_exactly
from auditlog.kafka.acls import Acl

_CREATE_ACLS, _VERSION = 30, 1
# Kafka's wire codes (org.apache.kafka.common.resource.ResourceType, acl.AclOperation, ...).
_RESOURCE_TYPES = {"TOPIC": 2, "GROUP": 3, "CLUSTER": 4}
_OPERATIONS = {"READ": 3, "WRITE": 4, "CREATE": 5, "DESCRIBE": 8}
_LITERAL, _ALLOW = 3, 3


def grant(port: int, principal: str, acls: Sequence[Acl], timeout: float = 10.0) -> None:
    """Allow ``User:principal`` each of ``acls`` from any host; raises `StackError` with the
    broker's message when it refuses one."""
    body = struct.pack(">i", len(acls))
    for acl in acls:
        body += struct.pack(">b", _RESOURCE_TYPES[acl.resource_type])
        body += _string(acl.resource_name)
        body += struct.pack(">b", _LITERAL)
        body += _string(f"User:{principal}") + _string("*")
        body += struct.pack(">bb", _OPERATIONS[acl.operation], _ALLOW)
    correlation_id = 0xAC1
    header = struct.pack(">hhi", _CREATE_ACLS, _VERSION, correlation_id) + _string("auditlog")
    request = header + body
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(request)) + request)
            (size,) = struct.unpack(">i", recv_exactly(sock, 4))
            response = recv_exactly(sock, size)
    except OSError as exc:
        raise StackError(f"kafka: cannot grant ACLs on {HOST}:{port}: {exc}") from exc
    answered_id, _throttle, count = struct.unpack_from(">iii", response)
    if answered_id != correlation_id or count != len(acls):
        raise StackError(f"kafka: unexpected CreateAcls answer from {HOST}:{port}")
    offset = 12
    for acl in acls:
        (error,) = struct.unpack_from(">h", response, offset)
        message, offset = _read_nullable_string(response, offset + 2)
        if error:
            raise StackError(f"kafka refused {acl} for {principal}: error {error} {message}")


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">h", len(data)) + data


def _read_nullable_string(data: bytes, offset: int) -> tuple[str | None, int]:
    (length,) = struct.unpack_from(">h", data, offset)
    offset += 2
    if length < 0:
        return None, offset
    return data[offset : offset + length].decode(), offset + length
