"""The JSON Schema (draft 2020-12) of a binlog record, shipped inside the package.

Producers in other languages validate against the same file (`record.schema.json`);
docs/FORMAT.md lists what the schema cannot express and `binlog.codec` enforces.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, cast

SCHEMA_FILE = "record.schema.json"


def load_schema() -> dict[str, Any]:
    """The record schema as a dict, read from the installed package data."""
    text = resources.files(__name__).joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    return cast(dict[str, Any], json.loads(text))
