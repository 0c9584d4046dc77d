"""The replay's state file: what was asked, the bound, and how far each shard got.

Written as the replay goes (atomically: a temporary file renamed over the old one),
so even a replay killed with SIGKILL leaves a file to resume from. A shard's
position is recorded only after every record up to it was applied (or counted as
not applied), so resuming after it never skips a record; the records between the
last save and the interruption are applied again, which the idempotent applier
turns into "skipped as stale".

`lazyrep replay --resume FILE` takes everything from the file: the request, the
resolved bound (the tip as it was at the first start, so a resumed replay ends
where the first one would have), the tombstone namespace of `--force`, and each
shard's position.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import tempfile
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lazyrep.replay_plan import (
    ReplayInputError,
    ReplayRequest,
    ShardProgress,
    ShardStatus,
    iso,
    parse_time,
)

STATE_FORMAT = "lazyrep-replay-state/1"
SAVE_INTERVAL_S = 0.5
"""How often positions reach the disk while shards are read (and always at a shard's end)."""
MAX_NOT_APPLIED = 1000
"""Records not applied that the file lists one by one (all are counted)."""


def default_state_path(state_dir: Path, stream: str, started_at: datetime, run_id: str) -> Path:
    """`<state dir>/replay/<stream>-<UTC start>-<id>.json`."""
    stamp = started_at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return state_dir / "replay" / f"{stream}-{stamp}-{run_id[:6]}.json"


def new_run_id() -> str:
    """A random id naming one replay (and its --force tombstone namespace)."""
    return secrets.token_hex(8)


def resume_command(path: Path) -> str:
    """The exact command that resumes the replay recorded in `path`."""
    return f"lazyrep replay --resume {shlex.quote(str(path.resolve()))}"


class ReplayState:
    """One replay's progress; thread-safe (every shard's reader updates it)."""

    def __init__(
        self,
        path: Path,
        request: ReplayRequest,
        *,
        stream: str,
        stop_time: datetime | None,
        run_id: str,
        created_at: datetime,
        shards: Mapping[str, ShardProgress] | None = None,
        status: str = "running",
        not_applied: list[dict[str, Any]] | None = None,
    ) -> None:
        self.path = path
        self.request = request
        self.stream = stream
        self.stop_time = stop_time
        self.run_id = run_id
        self.created_at = created_at
        self.status = status
        self._shards = dict(shards or {})
        self._not_applied = list(not_applied or [])
        self._lock = threading.Lock()
        self._saved_at = 0.0

    @property
    def shards(self) -> dict[str, ShardProgress]:
        """A copy of every shard's progress."""
        with self._lock:
            return dict(self._shards)

    @property
    def finished(self) -> bool:
        """True once a replay ran to its bound (resuming it does nothing)."""
        return self.status == "finished"

    def advance(self, shard_id: str, after: str, records: int) -> None:
        """Every record of `shard_id` up to `after` is done."""
        with self._lock:
            old = self._shards.get(shard_id, ShardProgress())
            self._shards[shard_id] = ShardProgress(old.status, after, old.records + records)
        self.save(force=False)

    def finish_shard(self, shard_id: str, status: ShardStatus) -> None:
        """The shard ended, was cut at the bound, or was skipped: saved at once."""
        with self._lock:
            old = self._shards.get(shard_id, ShardProgress())
            self._shards[shard_id] = ShardProgress(status, old.after, old.records)
        self.save()

    def note_not_applied(self, entries: list[dict[str, Any]]) -> None:
        """Records that could not be applied (undecodable, refused by DynamoDB)."""
        with self._lock:
            room = MAX_NOT_APPLIED - len(self._not_applied)
            self._not_applied += entries[: max(0, room)]

    def set_status(self, status: str) -> None:
        """running, interrupted, failed or finished; saved at once."""
        with self._lock:
            self.status = status
        self.save()

    def save(self, *, force: bool = True) -> None:
        """Write the file (at most every SAVE_INTERVAL_S unless `force`)."""
        with self._lock:
            now = time.monotonic()
            if not force and now - self._saved_at < SAVE_INTERVAL_S:
                return
            self._saved_at = now
            document = self._document()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(
                prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent
            )
            try:
                with os.fdopen(handle, "w", encoding="utf-8") as out:
                    json.dump(document, out, indent=1, sort_keys=True)
                    out.write("\n")
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(temporary, self.path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise

    def _document(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "run_id": self.run_id,
            "created_at": iso(self.created_at),
            "updated_at": iso(datetime.now(UTC)),
            "status": self.status,
            "stream": self.stream,
            "stop_time": iso(self.stop_time) if self.stop_time else None,
            "request": self.request.to_json(),
            "shards": {
                shard_id: {"status": p.status.value, "after": p.after, "records": p.records}
                for shard_id, p in sorted(self._shards.items())
            },
            "not_applied": self._not_applied,
            "resume": resume_command(self.path),
        }

    @classmethod
    def load(cls, path: Path) -> ReplayState:
        """Read a state file written by `save`.

        Raises:
            ReplayInputError: the file is missing, not a replay state file, or damaged.
        """
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ReplayInputError(f"--resume {path}: no such file") from None
        except (OSError, ValueError) as exc:
            raise ReplayInputError(
                f"--resume {path}: not a readable replay state file ({exc})"
            ) from exc
        if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT:
            raise ReplayInputError(f"--resume {path}: not a replay state file ({STATE_FORMAT})")
        try:
            shards = {
                shard_id: ShardProgress(
                    ShardStatus(entry["status"]), entry.get("after"), int(entry.get("records", 0))
                )
                for shard_id, entry in doc["shards"].items()
            }
            stop_time = doc.get("stop_time")
            return cls(
                path,
                ReplayRequest.from_json(doc["request"]),
                stream=str(doc["stream"]),
                stop_time=parse_time(stop_time, option="stop_time") if stop_time else None,
                run_id=str(doc["run_id"]),
                created_at=parse_time(doc["created_at"], option="created_at"),
                shards=shards,
                status=str(doc.get("status", "running")),
                not_applied=list(doc.get("not_applied", [])),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ReplayInputError(f"--resume {path}: the state file is damaged ({exc!r})") from exc
