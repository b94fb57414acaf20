#!/usr/bin/env bash
# The forwarder's tests deliver to a real rsyslog (tests/integration/forward_harness.py): install
# Debian's rsyslog and its GnuTLS network driver (rsyslog-gnutls, for the TLS input) when
# missing. Debian's package of the current release is the pin. Idempotent; run by
# scripts/test.sh. Without root or apt it says so and fails (the tests then skip, or fail
# under CI=true).
set -euo pipefail
have() {
    command -v rsyslogd >/dev/null 2>&1 || [ -x /usr/sbin/rsyslogd ] || return 1
    compgen -G '/usr/lib/*/rsyslog/lmnsd_gtls.so' >/dev/null
}
if have; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "forward-tools: rsyslog and rsyslog-gnutls are missing; install them (apt-get install rsyslog rsyslog-gnutls)" >&2
    exit 1
fi
echo "forward-tools: installing rsyslog and rsyslog-gnutls from Debian's packages"
apt-get update -qq
# The tests start their own rsyslogd in the foreground, on ports of their own; where an init
# system runs, the package also enables the system's rsyslog, which the tests do not use.
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    rsyslog rsyslog-gnutls >/dev/null
have
