"""The JSON Schema of hosts.yaml, for editors (completion and hover help), generated from the
settings classes: the same kinds, defaults and descriptions the parser reads.

The package ships it as hosts.schema.json (`slotswap check --schema` prints its path); after a
change to a section's class, write it again with
`python -m slotswap.config.schema > slotswap/config/hosts.schema.json` (a unit test compares).
"""

from __future__ import annotations

import json

from slotswap.config.fields import section_schema
from slotswap.config.inventory import Inventory
from slotswap.config.kinds import DEFS


def inventory_schema() -> dict[str, object]:
    inventory = section_schema(Inventory, nullable=False)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://slotswap.dev/schema/hosts.schema.json",
        "title": "slotswap inventory (hosts.yaml)",
        "description": "Servers and settings of one app deployed by slotswap. `slotswap check` "
                       "validates a file fully (this schema is for editors: completion and "
                       "hover help).",
        "type": inventory["type"],
        "additionalProperties": inventory["additionalProperties"],
        "required": inventory["required"],
        "$defs": DEFS,
        "properties": inventory["properties"],
    }


def schema_text() -> str:
    """The schema as the shipped file holds it."""
    return json.dumps(inventory_schema(), indent=2) + "\n"


if __name__ == "__main__":
    print(schema_text(), end="")
