"""Java 17 or newer to run Kafka, and Maven to fetch its jars: found, or installed with apt-get.

`ensure_java` looks at ``JAVA_HOME``, the ``PATH`` and ``/usr/lib/jvm``; when nothing there is new
enough (or ``mvn`` is missing and the jars must be fetched) and we are root on a machine with
apt-get, it installs them, and otherwise raises `StackError` saying what to install.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from auditlog.devstack.config import Echo, StackError
from auditlog.devstack.host import apt_install, apt_update, is_root, run


def ensure_java(echo: Echo, *, need_mvn: bool) -> str:
    """The path of a Java 17+ `java`; also makes sure `mvn` exists when the jars must be fetched."""
    java = _find_java()
    missing: list[str] = []
    if java is None:
        missing.append(_jre_package())
    if need_mvn and shutil.which("mvn") is None:
        missing.append("maven")
    if missing:
        lacking = [
            what for what, gone in (("Java 17", java is None), ("mvn", "maven" in missing)) if gone
        ]
        apt_install(missing, f"{' and '.join(lacking)} not found", echo)
        java = _find_java()
        if need_mvn and shutil.which("mvn") is None:
            raise StackError("mvn not found even after installing maven")
    if java is None:
        raise StackError("Java 17 not found even after installing it; set JAVA_HOME")
    return java


def _find_java() -> str | None:
    candidates: list[str] = []
    if java_home := os.environ.get("JAVA_HOME"):
        candidates.append(str(Path(java_home) / "bin" / "java"))
    if on_path := shutil.which("java"):
        candidates.append(on_path)
    candidates += sorted(str(p) for p in Path("/usr/lib/jvm").glob("*/bin/java"))
    for java in dict.fromkeys(candidates):
        major = _java_major(java)
        if major is not None and major >= 17:
            return java
    return None


def _java_major(java: str) -> int | None:
    try:
        result = run([java, "-version"], what="java -version", check=False, timeout=30)
    except StackError:
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if match is None:
        return None
    major = int(match.group(1))
    # Java 8 and older report "1.8.0_x".
    return int(match.group(2) or 0) if major == 1 else major


def _jre_package() -> str:
    # Debian releases after bookworm dropped openjdk-17; their default JRE is newer, which is fine.
    if is_root() and shutil.which("apt-get") is not None:
        apt_update()
        known = run(["apt-cache", "show", "openjdk-17-jre-headless"], what="apt-cache", check=False)
        if known.returncode != 0:
            return "default-jre-headless"
    return "openjdk-17-jre-headless"
