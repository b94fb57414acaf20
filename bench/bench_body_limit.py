"""A 1 GB request body against one ingest process: refused at the limit, memory flat.

    .venv/bin/python -m bench.bench_body_limit [--gigabytes 1]

Starts ``auditlog ingest`` on the local stack and sends it, with ``curl``, a body of
``--gigabytes`` GB of zeros twice: once with ``Content-Length`` (refused before a byte is read)
and once chunked, without a length (refused when the bytes read pass the limit). Reports each
answer (status, Pangea status and error code, time), how many bytes curl managed to send, and
the ingest process's resident memory (``VmRSS``) before and after, and its peak (``VmHWM``).
Then checks that the service still answers a good request.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path
from typing import Any

from bench import results
from bench.harness import bench_stack, free_port, wait_http


def _memory_kib(pid: int) -> dict[str, int]:
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def _curl(url: str, token: str, gigabytes: float, *, chunked: bool) -> dict[str, Any]:
    size = int(gigabytes * 1_000_000_000)
    headers = ["-H", f"Authorization: Bearer {token}", "-H", "Content-Type: application/json"]
    if chunked:
        headers += ["-H", "Transfer-Encoding: chunked"]
    else:
        headers += ["-H", f"Content-Length: {size}"]
    began = time.perf_counter()
    zeros = subprocess.Popen(["head", "-c", str(size), "/dev/zero"], stdout=subprocess.PIPE)
    done = subprocess.run(
        ["curl", "-sS", "-o", "-", "-w", "\n%{http_code} %{size_upload}", "-X", "POST",
         *headers, "--data-binary", "@-", url],
        stdin=zeros.stdout,
        capture_output=True,
        timeout=600,
        check=False,
    )
    zeros.kill()
    zeros.wait()
    seconds = time.perf_counter() - began
    body, _, tail = done.stdout.decode("utf-8", "replace").rpartition("\n")
    status, _, uploaded = tail.partition(" ")
    answer: dict[str, Any] = {}
    try:
        parsed = json.loads(body)
        answer = {
            "status": parsed.get("status"),
            "codes": [e["code"] for e in (parsed.get("result") or {}).get("errors", [])],
            "summary": parsed.get("summary"),
        }
    except ValueError:
        answer = {"raw": body[:200]}
    return {
        "mode": "chunked" if chunked else "content-length",
        "offered_bytes": size,
        "http_status": int(status) if status.isdigit() else None,
        "uploaded_bytes": float(uploaded) if uploaded else None,
        "seconds": seconds,
        "answer": answer,
        "curl_stderr": done.stderr.decode("utf-8", "replace")[-300:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=1.0)
    results.add_option(parser)
    args = parser.parse_args()
    started = results.now()
    with bench_stack(Path(".auditlog/bench"), 1) as bench:
        port = free_port()
        proc = bench.spawn("ingest", AUDITLOG_PORT=str(port))
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/readyz")
        before = _memory_kib(proc.pid)
        attempts = []
        for chunked in (False, True):
            attempt = _curl(f"{base}/v1/log", bench.token, args.gigabytes, chunked=chunked)
            attempt["memory_kib_after"] = _memory_kib(proc.pid)
            attempts.append(attempt)
            print(
                f"{attempt['mode']}: HTTP {attempt['http_status']} {attempt['answer']} after"
                f" {attempt['uploaded_bytes']:,.0f} of {attempt['offered_bytes']:,} bytes"
                f" in {attempt['seconds']:.2f} s; ingest RSS"
                f" {attempt['memory_kib_after']['VmRSS']:,} KiB"
                f" (peak {attempt['memory_kib_after']['VmHWM']:,} KiB)"
            )
        good = subprocess.run(
            ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
             "-H", f"Authorization: Bearer {bench.token}",
             "--data-binary", '{"event":{"message":"still here"}}', f"{base}/v1/log"],
            capture_output=True, text=True, timeout=30, check=False,
        ).stdout
        print(f"ingest RSS before {before['VmRSS']:,} KiB; a good request after: HTTP {good}")
    figures = {"memory_kib_before": before, "attempts": attempts, "good_request_after": good}
    ok = good == "200" and all(a["http_status"] == 413 for a in attempts)
    path = results.write(
        "bench_body_limit", started, vars(args), figures, args.results_dir,
        status="ok" if ok else "check failed",
    )
    print(f"result: {path}")


if __name__ == "__main__":
    main()
