"""The console's encodings (query/console/*.js) against Python: canonical JSON as the log hashes
it (floats, big integers, escapes, key order, texts that are not canonical), BLAKE3, and client
signatures in each key form Pangea's SDKs send, run in headless Chromium.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Iterator
from typing import Any

import pytest
from blake3 import blake3

from auditlog.core.envelope import canonical_json
from auditlog.core.errors import AuditLogError
from tests.e2e.browser import module_page, run

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def page() -> Iterator[Any]:
    with module_page() as driver:
        yield driver


# Canonical JSON ---------------------------------------------------------------------------------

TEXTS = [
    '{"b":1,"a":[1.0,2,3.5e-7,1e16,1e15,100.0,0.0001,0.00001,-0.0,-0,1E2,5e-324,1.7976931348623157e308]}',
    '{"big":123456789012345678901234567890,"neg":-98765432109876543210,"f":123.456}',
    '{"s":"quote \\" backslash \\\\ nl \\n tab \\t ctl \\u0001 del \\u007f nbsp \\u00a0 \\u2028"}',
    '{"\\ue000":1,"\\ud83d\\ude00":2,"z":3,"Z":4,"é":5,"":6}',
    '{"nested":{"y":[{"b":true,"a":null}],"x":false}}',
    ' { "spaced" : [ 1 , 2 ] } ',
    '{"lone":"\\ud800"}',
    '{"dup":1,"dup":2}',
    '{"inf":1e400}',
    '{"unicode":"\\u00e9\\u4e2d\\ud83d\\ude00 raw é中😀"}',
]


def python_canonical(text: str) -> str | None:
    try:
        pairs: list[list[tuple[str, object]]] = []
        value = json.loads(text, object_pairs_hook=lambda p: pairs.append(p) or dict(p))
        if any(len({k for k, _ in p}) != len(p) for p in pairs):
            return None  # a duplicate key: no canonical text keeps both
        return canonical_json(value).decode("utf-8")
    except (AuditLogError, ValueError):
        return None


def test_canonical_json_is_pythons(page: Any) -> None:
    expected = [python_canonical(t) for t in TEXTS]
    got = run(
        page,
        "const c = await mod('canonical.js');"
        "return args[0].map((t) => { try { return c.canonicalOf(t); } catch (e) {"
        " if (e instanceof c.JsonError) return null; throw e; } });",
        TEXTS,
    )
    assert got == expected
    assert expected[5] == '{"spaced":[1,2]}'  # parsed, and not canonical as sent


def test_floats_are_written_as_python_repr(page: Any) -> None:
    rng = random.Random(26)
    floats = [rng.uniform(-1, 1) * 10 ** rng.randint(-30, 30) for _ in range(400)]
    floats += [0.1, 1e-5, 1e-4, 9.999e15, 1e16, 2**53 + 0.0, 1 / 3, 5e-324, 1.5]
    got = run(
        page,
        "const c = await mod('canonical.js'); return args[0].map((x) => c.pythonFloat(x));",
        floats,
    )
    assert got == [repr(x) for x in floats]


# BLAKE3 -----------------------------------------------------------------------------------------


def test_blake3_is_the_reference(page: Any) -> None:
    lengths = [*range(2101), 3072, 4096, 5000, 8193, 65536 + 7]
    expected = [blake3(bytes(i % 251 for i in range(n))).hexdigest() for n in lengths]
    got = run(
        page,
        "const {blake3} = await mod('blake3.js'); const {hex} = await mod('merkle.js');"
        "return args[0].map((n) => hex(blake3(Uint8Array.from({length: n}, (_, i) => i % 251))));",
        lengths,
    )
    assert got == expected


# Client signatures --------------------------------------------------------------------------------


def test_client_signatures_in_every_key_form(page: Any) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from auditlog.core.client_signature import verify_event_signature

    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    pem = public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    forms = {
        "json": json.dumps({"algorithm": "ED25519", "key": pem}),
        "pem": pem,
        "ssh": public.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode(),
        "raw": base64.b64encode(public.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode(),
    }
    event = {"message": "signed \u00e9 \U0001f600", "actor": "alice", "n": 1.5, "big": 10**20}
    signature = base64.b64encode(key.sign(canonical_json(event))).decode()
    other = base64.b64encode(Ed25519PrivateKey.generate().sign(canonical_json(event))).decode()
    edited = {**event, "actor": "mallory"}
    cases = []
    for form, public_key in forms.items():
        for name, ev, sig, valid in [
            ("good", event, signature, True),
            ("edited", edited, signature, False),
            ("other key", event, other, False),
        ]:
            try:
                verify_event_signature(ev, sig, public_key)
                python_valid = True
            except AuditLogError:
                python_valid = False
            assert python_valid == valid, (form, name)
            envelope = {
                "event": ev,
                "received_at": "2026-12-05T00:00:00.000000Z",
                "signature": sig,
                "public_key": public_key,
            }
            cases.append((f"{form} {name}", canonical_json(envelope).decode(), valid))
    unsigned = canonical_json({"event": event, "received_at": "2026-12-05T00:00:00.000000Z"})
    got = run(
        page,
        "const c = await mod('canonical.js'); const s = await mod('signature.js');"
        "const status = async (text) => (await s.clientSignature(c.parseTree(text))).status;"
        "const out = [];"
        "for (const [, text] of args[0]) out.push(await status(text));"
        "out.push(await status(args[1]));"
        "return out;",
        cases,
        unsigned.decode(),
    )
    assert got == [("valid" if valid else "invalid") for _, _, valid in cases] + ["none"]
