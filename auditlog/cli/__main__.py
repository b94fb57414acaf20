"""``python -m auditlog.cli`` runs the ``auditlog`` command."""

import sys

from auditlog.cli import main

sys.exit(main())
