"""Counters of the fault proxy, so tests can assert that faults really happened.

Keyed by X-Amz-Target (``-`` for requests without one); queries accept the
same operation patterns as rules (``*``, ``PutRecords``, ``Kinesis_20131202.*``).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

from emulators.faultproxy_rules import Fault, operation_matches

NO_TARGET = "-"


class StatsJson(TypedDict):
    """Counters on the wire (``GET /__faultproxy__/stats``)."""

    requests: dict[str, int]
    faults: dict[str, dict[str, int]]
    records_failed: dict[str, int]


def _matches(pattern: str, key: str) -> bool:
    return operation_matches(pattern, "" if key == NO_TARGET else key)


@dataclass(frozen=True)
class FaultStats:
    """A snapshot of the counters."""

    requests_by_operation: Mapping[str, int] = field(default_factory=dict)
    faults_by_kind: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    records_failed_by_operation: Mapping[str, int] = field(default_factory=dict)

    def requests(self, operation: str = "*") -> int:
        """Requests seen (control requests excluded)."""
        return sum(n for k, n in self.requests_by_operation.items() if _matches(operation, k))

    def faults(self, fault: Fault | str | None = None, operation: str = "*") -> int:
        """Faults injected of one kind, or of every kind but ``pass`` when ``fault`` is None."""
        kinds = (
            [Fault(fault).value]
            if fault is not None
            else [k for k in self.faults_by_kind if k != Fault.PASS.value]
        )
        return sum(
            n
            for kind in kinds
            for k, n in self.faults_by_kind.get(kind, {}).items()
            if _matches(operation, k)
        )

    def records_failed(self, operation: str = "*") -> int:
        """Records (PutRecords) or items (BatchWriteItem) reported failed by the proxy."""
        return sum(n for k, n in self.records_failed_by_operation.items() if _matches(operation, k))

    def to_json(self) -> StatsJson:
        """The JSON form served by the control endpoint."""
        return StatsJson(
            requests=dict(self.requests_by_operation),
            faults={kind: dict(per_op) for kind, per_op in self.faults_by_kind.items()},
            records_failed=dict(self.records_failed_by_operation),
        )

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> FaultStats:
        """Read the control endpoint's JSON form back."""
        return cls(
            requests_by_operation=dict(doc.get("requests", {})),
            faults_by_kind={k: dict(v) for k, v in doc.get("faults", {}).items()},
            records_failed_by_operation=dict(doc.get("records_failed", {})),
        )


@dataclass
class StatsRecorder:
    """Mutable, lock-protected counters; :meth:`snapshot` hands out a copy."""

    _requests: Counter[str] = field(default_factory=Counter)
    _faults: dict[str, Counter[str]] = field(default_factory=dict)
    _records_failed: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @staticmethod
    def key(target: str) -> str:
        """The counter key of an X-Amz-Target."""
        return target or NO_TARGET

    def request(self, target: str) -> None:
        """Count a request seen."""
        with self._lock:
            self._requests[self.key(target)] += 1

    def fault(self, fault: Fault, target: str) -> None:
        """Count a fault injected."""
        with self._lock:
            self._faults.setdefault(fault.value, Counter())[self.key(target)] += 1

    def records_failed(self, target: str, n: int) -> None:
        """Count records reported failed by a partial failure."""
        with self._lock:
            self._records_failed[self.key(target)] += n

    def reset(self) -> None:
        """Zero every counter."""
        with self._lock:
            self._requests.clear()
            self._faults.clear()
            self._records_failed.clear()

    def snapshot(self) -> FaultStats:
        """A consistent copy of the counters."""
        with self._lock:
            return FaultStats(
                requests_by_operation=dict(self._requests),
                faults_by_kind={k: dict(v) for k, v in self._faults.items()},
                records_failed_by_operation=dict(self._records_failed),
            )
