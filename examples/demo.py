"""What `make up` shows: log the seed event with the official Pangea SDK, then fetch its receipt
and verify it offline with nothing but the envelope and the log's public key.

Runs with the variables of .auditlog/dev.env in its environment (`auditlog up --then` sets them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from pangea.config import PangeaConfig
from pangea.services import Audit

SEED = {
    "message": "Security updated",
    "action": "Off",
    "actor": "dennis.nedry@ingen.com",
    "target": "Visitor center",
}


def fetch_receipt(base: str, token: str, event_hash: str, timeout: float = 30.0) -> str:
    request = urllib.request.Request(  # noqa: S310 - the local dev URL
        f"{base}/v1/receipts/{event_hash}", headers={"Authorization": f"Bearer {token}"}
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310 - local URL
                return str(resp.read().decode())
        except urllib.error.HTTPError as exc:
            if exc.code != 404 or time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def main() -> int:
    base = os.environ["PANGEA_DOMAIN"]
    token = os.environ["PANGEA_AUDIT_TOKEN"]
    audit = Audit(token, config=PangeaConfig(domain=base))
    result = audit.log(**SEED, verbose=True).result
    assert result is not None
    envelope = result.envelope.model_dump(exclude_none=True)
    print("\n== logged with pangea-sdk")
    print(f"hash:  {result.hash}")
    print(f"event: {json.dumps(envelope, sort_keys=True)}")

    receipt = fetch_receipt(base, token, result.hash)
    out = Path(os.environ.get("AUDITLOG_HOME", ".auditlog")) / "demo"
    out.mkdir(parents=True, exist_ok=True)
    (out / "envelope.json").write_text(json.dumps(envelope))
    (out / "receipt.tlog-proof").write_text(receipt)
    print(f"\n== receipt (c2sp.org/tlog-proof@v1), saved in {out}/receipt.tlog-proof")
    print(receipt)
    print("== auditlog verify receipt (offline: envelope + public key only)")
    return subprocess.call(
        [
            sys.executable,
            "-m",
            "auditlog.cli",
            "verify",
            "receipt",
            str(out / "receipt.tlog-proof"),
            "--entry",
            str(out / "envelope.json"),
            "--key",
            os.environ["AUDITLOG_VKEY"],
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
