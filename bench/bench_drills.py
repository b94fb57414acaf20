"""Recovery times of the failure drills, kept as a result: Kafka broker kills and a PostgreSQL
failover.

    .venv/bin/python -m bench.bench_drills

Runs the drills of tests/integration/test_kafka_cluster.py (a three-broker cluster of their
own: the leader of a partition killed with SIGKILL under load; two brokers killed, then
restarted) and tests/integration/test_pg_failover.py (a synchronous replica promoted after the
primary is stopped as a crash would stop it, two sealers running) with pytest, against the local
stack, and writes what they measured (tests/conftest.py ``record_drill``) with the pytest
outcome to bench/results/bench_drills-*.json. The drills assert their own invariants (nothing
acknowledged is lost, nothing is sealed twice, audit clean); this records how long recovery took.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import results

DRILLS = ("tests/integration/test_kafka_cluster.py", "tests/integration/test_pg_failover.py")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    results.add_option(parser)
    args = parser.parse_args()
    started = results.now()
    with tempfile.TemporaryDirectory() as tmp:
        figures_file = Path(tmp) / "drills.json"
        env = {**os.environ, "AUDITLOG_DRILL_FIGURES": str(figures_file)}
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *DRILLS],
            env=env, check=False, timeout=1800,
        )  # fmt: skip
        drills = json.loads(figures_file.read_text()) if figures_file.exists() else {}
    figures = {"pytest_exit_code": done.returncode, "drills": drills}
    for name, measured in drills.items():
        print(f"{name}: {measured}")
    status = "ok" if done.returncode == 0 else "failed"
    path = results.write(
        "bench_drills", started, vars(args), figures, args.results_dir, status=status
    )
    print(f"result: {path}")
    if done.returncode != 0:
        raise SystemExit(done.returncode)


if __name__ == "__main__":
    main()
