"""deploy/image/Containerfile's invariants, checked without building it (the build itself is
tests/integration/test_image.py, on request): a non-root numeric user, nothing writable needed
outside /tmp, every service's metrics listener on, dependencies only from the pinned wheels."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from ingest.settings import Settings as IngestSettings
from query.settings import Settings as QuerySettings
from sealer.settings import Settings as SealerSettings

IMAGE = Path(__file__).resolve().parents[2] / "deploy" / "image"
Instruction = tuple[str, str]


def instructions(text: str) -> list[Instruction]:
    """(KEYWORD, arguments) of each instruction: comments dropped, continuations joined."""
    joined = re.sub(
        r"\\\n", " ", "\n".join(ln for ln in text.splitlines() if not ln.startswith("#"))
    )
    found = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def final_stage(found: list[Instruction]) -> list[Instruction]:
    last_from = max(i for i, (keyword, _) in enumerate(found) if keyword == "FROM")
    return found[last_from:]


def env_of(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in stage:
        if keyword == "ENV":
            for item in shlex.split(rest):
                name, _, value = item.partition("=")
                env[name] = value
    return env


def problems(text: str) -> list[str]:
    """What breaks the image's contract; empty when nothing does."""
    found = instructions(text)
    stage = final_stage(found)
    env = env_of(stage)
    wrong = []
    users = [rest for keyword, rest in stage if keyword == "USER"]
    if not users or not re.fullmatch(r"[1-9][0-9]*:[1-9][0-9]*", users[-1]):
        wrong.append("the final stage must end as a numeric non-root USER uid:gid")
    elif any(k in ("RUN", "COPY", "ADD") for k, _ in stage[stage.index(("USER", users[-1])) :]):
        wrong.append("nothing may be built after USER (files would be the user's to change)")
    if any(keyword in ("VOLUME", "ENTRYPOINT") for keyword, _ in stage):
        wrong.append("no VOLUME (a writable path) and no ENTRYPOINT (the command is auditlog)")
    if env.get("PYTHONDONTWRITEBYTECODE") != "1":
        wrong.append("PYTHONDONTWRITEBYTECODE=1: the root filesystem is read-only")
    wrong += [
        f"{name} must be under /tmp (the only writable path)"
        for name in ("HOME", "XDG_STATE_HOME")
        if not env.get(name, "").startswith("/tmp")
    ]
    workdir = [rest for keyword, rest in stage if keyword == "WORKDIR"]
    if not workdir or not workdir[-1].startswith("/tmp"):
        wrong.append("WORKDIR must be under /tmp")
    cmd = [rest for keyword, rest in stage if keyword == "CMD"]
    if not cmd or json.loads(cmd[-1])[0] != "auditlog":
        wrong.append('CMD must run auditlog (["auditlog", ...])')
    installs = [rest for keyword, rest in found if keyword == "RUN" and "pip install" in rest]
    if not installs or not all(
        "--no-index" in r and "-c /src/constraints.txt" in r for r in installs
    ):
        wrong.append("pip installs only the pinned wheels: --no-index -c constraints.txt")
    return wrong


def test_the_containerfile_keeps_its_contract() -> None:
    assert problems((IMAGE / "Containerfile").read_text()) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda t: t.replace("USER 10001:10001", "USER 0:0"), "numeric non-root USER"),
        (lambda t: t.replace("USER 10001:10001", "USER auditlog"), "numeric non-root USER"),
        (lambda t: t.replace("USER 10001:10001\n", ""), "numeric non-root USER"),
        (lambda t: t + "RUN touch /opt/x\n", "nothing may be built after USER"),
        (lambda t: t + "VOLUME /data\n", "no VOLUME"),
        (lambda t: t.replace("PYTHONDONTWRITEBYTECODE=1", "PYTHONDONTWRITEBYTECODE=0"), "BYTECODE"),
        (lambda t: t.replace("HOME=/tmp", "HOME=/home/auditlog"), "HOME must be under /tmp"),
        (lambda t: t.replace("WORKDIR /tmp", "WORKDIR /srv"), "WORKDIR"),
        (lambda t: t.replace('CMD ["auditlog", "--help"]', 'CMD ["sh"]'), "CMD must run"),
        (lambda t: t.replace("--no-index", ""), "pinned wheels"),
    ],
)
def test_each_invariant_can_fail(change: object, expected: str) -> None:
    text = (IMAGE / "Containerfile").read_text()
    broken = change(text)  # type: ignore[operator]
    assert broken != text
    assert any(expected in p for p in problems(broken)), problems(broken)


def test_the_image_turns_every_metrics_listener_on() -> None:
    env = env_of(final_stage(instructions((IMAGE / "Containerfile").read_text())))
    environ = {k: v for k, v in env.items() if k.startswith("AUDITLOG_")}
    ingest, query, sealer = (
        IngestSettings.from_env(environ),
        QuerySettings.from_env(environ),
        SealerSettings.from_env(environ),
    )
    listeners = [(s.metrics_host, s.metrics_port) for s in (ingest, query, sealer)]
    assert listeners == [("0.0.0.0", 9100), ("0.0.0.0", 9200), ("0.0.0.0", 9300)]
    assert ingest.host == query.host == "0.0.0.0"
    exposed = {
        int(port)
        for keyword, rest in instructions((IMAGE / "Containerfile").read_text())
        if keyword == "EXPOSE"
        for port in rest.split()
    }
    assert {ingest.port, query.port, 9100, 9200, 9300} <= exposed
    assert str(sealer.signing_key_file).startswith("/etc/auditlog/")


def test_build_script_is_valid_bash() -> None:
    script = IMAGE / "build.sh"
    assert script.stat().st_mode & 0o111, "build.sh must be executable"
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=10)
