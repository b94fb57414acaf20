"""Pangea's Secure Audit Log quickstart, unchanged: only PANGEA_DOMAIN and the token differ.

source .auditlog/dev.env && .venv/bin/python examples/pangea_quickstart.py
"""

import os

import pangea.exceptions as pe
from pangea.config import PangeaConfig
from pangea.services import Audit

token = os.getenv("PANGEA_AUDIT_TOKEN")
domain = os.getenv("PANGEA_DOMAIN")
config = PangeaConfig(domain=domain)
audit = Audit(token, config=config, logger_name="audit")

print("Logging...")
try:
    log_response = audit.log(
        message="Security updated",
        action="Off",
        actor="dennis.nedry@ingen.com",
        target="Visitor center",
        verbose=True,
    )
    print(f"Response: {log_response.result}")
except pe.PangeaAPIException as e:
    print(f"Request Error: {e.response.summary}")
    for err in e.errors:
        print(f"\t{err.detail} \n")
