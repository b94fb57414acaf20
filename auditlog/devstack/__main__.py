"""``python -m auditlog.devstack start|stop|status``: `auditlog stack` before it is installed."""

import sys

from auditlog.devstack.stack import main

sys.exit(main(sys.argv[1:]))
