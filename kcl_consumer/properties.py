"""Rendering a MultiLangDaemon .properties file from a template and run-time values.

The local stack picks its ports at run time, so properties/local.properties holds
`${name}` placeholders that are filled here (`lazyrep kcl render` on the command line).
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

DEFAULT_TEMPLATE = Path(__file__).resolve().parents[1] / "properties" / "local.properties"
"""properties/local.properties of the source tree (the project is installed editable)."""

INITIAL_POSITIONS = ("TRIM_HORIZON", "LATEST")
MAX_RECORDS_LIMIT = 10_000  # GetRecords returns at most 10,000 records per call.


@dataclass(frozen=True)
class KclSettings:
    """The values a properties template needs; field names are its placeholders."""

    executable: str
    application_name: str
    stream_name: str
    region: str
    kinesis_endpoint: str
    dynamodb_endpoint: str
    cloudwatch_endpoint: str
    initial_position: str = "TRIM_HORIZON"
    max_records: int = MAX_RECORDS_LIMIT
    idle_time_between_reads_ms: int = 250

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, str) and (not value.strip() or "\n" in value or "\r" in value):
                raise ValueError(f"{name} must be a non-empty single line, got {value!r}")
        if self.initial_position not in INITIAL_POSITIONS:
            raise ValueError(f"initial_position must be one of {INITIAL_POSITIONS}")
        if not 1 <= self.max_records <= MAX_RECORDS_LIMIT:
            raise ValueError(f"max_records must be in 1..{MAX_RECORDS_LIMIT}")
        if self.idle_time_between_reads_ms < 0:
            raise ValueError("idle_time_between_reads_ms must be >= 0")


def _escape(value: str) -> str:
    # java.util.Properties treats a backslash as an escape in values.
    return value.replace("\\", "\\\\")


def render(
    settings: KclSettings,
    *,
    template: Path = DEFAULT_TEMPLATE,
    extra: Mapping[str, str] | None = None,
) -> str:
    """Return the template filled from `settings`, then `extra` keys appended (they win:
    java.util.Properties keeps the last value of a repeated key).

    Raises:
        KeyError: the template has a placeholder `settings` does not provide.
    """
    values = {k: _escape(str(v)) for k, v in asdict(settings).items()}
    text = string.Template(template.read_text()).substitute(values)
    if extra:
        lines = [f"{key} = {_escape(value)}" for key, value in extra.items()]
        text = text.rstrip("\n") + "\n\n# Overrides\n" + "\n".join(lines) + "\n"
    return text


def write_properties(
    path: Path,
    settings: KclSettings,
    *,
    template: Path = DEFAULT_TEMPLATE,
    extra: Mapping[str, str] | None = None,
) -> Path:
    """Render to `path` (parents created) and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(settings, template=template, extra=extra))
    return path
