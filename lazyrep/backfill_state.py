"""`lazyrep backfill --state FILE`: where an interrupted copy stopped, to resume it there.

A JSON file holding the start position noted by the first run (a resumed copy keeps
it: items copied before the interruption are only as new as that start), the scan's
segment count, and per table and segment the key to resume after (`"done"` when the
segment is finished). It is written atomically after every page, so a crash loses at
most the page in flight, which the guarded writes make safe to copy again.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from binlog.attrvalue import AttributeValueError, item_from_wire, item_to_wire
from lazyrep.verify_target import TargetError

STATE_FORMAT = 1
DONE = "done"


@dataclass(slots=True)
class BackfillState:
    """The resumable progress of one backfill (see the module docstring)."""

    path: Path | None  # None: kept in memory only (no --state)
    replica: str
    stream: str
    segments: int
    start_epoch: int
    noted_at: datetime
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    finished: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, path: Path) -> BackfillState | None:
        """The state in `path`, or None if there is no such file.

        Raises:
            TargetError: the file is not a backfill state.
        """
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise TargetError(f"--state {path}: not a readable backfill state ({exc})") from exc
        try:
            if raw["format"] != STATE_FORMAT:
                raise TargetError(f"--state {path}: unknown format {raw['format']!r}")
            return cls(
                path,
                str(raw["replica"]),
                str(raw["stream"]),
                int(raw["segments"]),
                int(raw["start_epoch"]),
                datetime.fromisoformat(raw["noted_at"]),
                {str(t): dict(s) for t, s in raw["tables"].items()},
                bool(raw["finished"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TargetError(f"--state {path}: not a backfill state ({exc!r})") from exc

    def check(self, replica: str, stream: str) -> None:
        """Refuse a state written for another replica or stream.

        Raises:
            TargetError: naming what differs.
        """
        if (self.replica, self.stream) != (replica, stream):
            raise TargetError(
                f"--state {self.path} belongs to replica {self.replica!r} of stream "
                f"{self.stream!r}, not {replica!r} of {stream!r}"
            )

    def pending_segments(self, table: str) -> list[int]:
        """The segments of `table` not finished yet."""
        done = self.tables.get(table, {})
        return [s for s in range(self.segments) if done.get(str(s)) != DONE]

    def start_keys(self, table: str) -> dict[int, dict[str, Any]]:
        """Per unfinished segment of `table`, the key to resume after (boto3 form).

        Raises:
            TargetError: a saved key is corrupt.
        """
        keys: dict[int, dict[str, Any]] = {}
        for segment, saved in self.tables.get(table, {}).items():
            if isinstance(saved, dict):
                try:
                    keys[int(segment)] = item_from_wire(saved)[0]
                except AttributeValueError as exc:
                    where = f"--state {self.path}: {table} segment {segment}"
                    raise TargetError(f"{where}: {exc}") from exc
        return keys

    def page_done(self, table: str, segment: int, last_key: Mapping[str, Any] | None) -> None:
        """Remember where `segment` of `table` resumes (None: it is finished); save."""
        saved: Any = DONE if last_key is None else item_to_wire(last_key)[0]
        with self._lock:
            self.tables.setdefault(table, {})[str(segment)] = saved
            self.save_locked()

    def finish(self) -> None:
        """Mark the whole copy finished; save."""
        with self._lock:
            self.finished = True
            self.save_locked()

    def save(self) -> None:
        """Write the file atomically."""
        with self._lock:
            self.save_locked()

    def save_locked(self) -> None:
        """`save` for a caller holding the lock."""
        if self.path is None:
            return
        doc = {
            "format": STATE_FORMAT,
            "replica": self.replica,
            "stream": self.stream,
            "segments": self.segments,
            "start_epoch": self.start_epoch,
            "noted_at": self.noted_at.isoformat(),
            "finished": self.finished,
            "tables": self.tables,
        }
        fd, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(doc, handle, indent=1, sort_keys=True)
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
