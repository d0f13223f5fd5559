"""JSON Schema of a tenant file, generated from the model (`make schemas`; CI fails when stale).

The file on disk also carries SOPS' own `sops` metadata block, which the model never sees (the loader
strips it after decryption), so the schema admits it for editors.
"""

from __future__ import annotations

import json
from typing import Any

from tenancy.model import Tenant

SCHEMA_ID = "https://tenantctl.dev/schemas/tenant.schema.json"


def tenant_schema() -> dict[str, Any]:
    schema = Tenant.model_json_schema(mode="validation")
    schema["properties"]["sops"] = {"type": "object", "description": "SOPS metadata (managed by sops)."}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def render() -> str:
    return json.dumps(tenant_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(render())
