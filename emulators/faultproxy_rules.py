"""Fault rules of the fault proxy: which request gets which fault, seeded and counted.

I/O-free so that matching, probabilities and counts are unit-testable; the proxy
asks :class:`RuleBook` for a decision per request and applies it.
"""

from __future__ import annotations

import fnmatch
import random
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, NamedTuple, TypedDict


class Fault(StrEnum):
    """What the proxy does to a matched request."""

    PASS = "pass"  # noqa: S105 - not a password; forward untouched (with a count: "let the next N through")
    DELAY = "delay"  # wait delay_ms, then forward
    DELAY_RESPONSE = "delay_response"  # forward, wait delay_ms, then answer: server acted
    THROTTLE = "throttle"  # answer a 400 throttling error without forwarding
    SERVER_ERROR = "server_error"  # answer a 5xx without forwarding
    PARTIAL_FAILURE = "partial_failure"  # PutRecords / BatchWriteItem: drop some, report them
    CUT_BEFORE = "cut_before"  # drop the client connection; the server never sees the request
    CUT_AFTER = "cut_after"  # forward, read the answer, then drop the client connection


# Codes botocore's standard and legacy retry modes treat as throttling (retries/standard.py
# _THROTTLED_ERROR_CODES; RequestLimitExceeded is DynamoDB's account-level throttle).
THROTTLE_CODES = (
    "ProvisionedThroughputExceededException",
    "LimitExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
)
# Kinesis documents InternalFailure (500); DynamoDB answers InternalServerError (500);
# both may answer ServiceUnavailable (503). botocore retries any 500/502/503/504.
SERVER_ERROR_CODES: Mapping[str, int] = {
    "InternalFailure": 500,
    "InternalServerError": 500,
    "ServiceUnavailable": 503,
}
# ErrorCode values Kinesis puts in a failed PutRecords entry.
PARTIAL_FAILURE_CODES = (
    "ProvisionedThroughputExceededException",
    "InternalFailure",
    "KMSThrottlingException",
)
PARTIAL_FAILURE_OPERATIONS = ("PutRecords", "BatchWriteItem")

_ERROR_CODES: Mapping[Fault, Sequence[str]] = {
    Fault.THROTTLE: THROTTLE_CODES,
    Fault.SERVER_ERROR: tuple(SERVER_ERROR_CODES),
    Fault.PARTIAL_FAILURE: PARTIAL_FAILURE_CODES,
}


class RuleJson(TypedDict, total=False):
    """A rule on the wire (control endpoint, ``--rules``); only ``fault`` is required."""

    fault: str
    operation: str
    probability: float
    count: int | None
    delay_ms: int
    error_code: str | None
    failed_fraction: float
    failed_indices: list[int] | None
    reset: bool


def operation_name(target: str) -> str:
    """``Kinesis_20131202.PutRecords`` -> ``PutRecords``; no target -> ``""``."""
    return target.rpartition(".")[2]


def operation_matches(pattern: str, target: str) -> bool:
    """Match an X-Amz-Target against a rule's ``operation``.

    ``*`` matches every request (also those without a target); a pattern with a
    dot is a glob over the whole target (``Kinesis_20131202.*``); a bare name
    matches the operation part (``PutRecords``).
    """
    if pattern == "*":
        return True
    if "." in pattern:
        return fnmatch.fnmatchcase(target, pattern)
    return operation_name(target) == pattern


@dataclass(frozen=True)
class Rule:
    """One fault rule; rules are tried in order and the first that fires decides.

    A rule fires on a matching request with ``probability`` (drawn from its own
    seeded generator) until it has fired ``count`` times (``None``: no limit).
    ``delay_ms`` also delays other faults (before acting; after the answer for
    ``delay_response``). ``failed_fraction`` / ``failed_indices`` choose the
    records of a partial failure; ``reset`` makes a cut an RST instead of a FIN.
    """

    fault: Fault
    operation: str = "*"
    probability: float = 1.0
    count: int | None = None
    delay_ms: int = 0
    error_code: str | None = None
    failed_fraction: float = 0.2
    failed_indices: tuple[int, ...] | None = None
    reset: bool = True

    def __post_init__(self) -> None:
        allowed_faults = ", ".join(f.value for f in Fault)
        try:
            object.__setattr__(self, "fault", Fault(self.fault))
        except ValueError:
            raise ValueError(f"fault must be one of {allowed_faults}; got {self.fault!r}") from None
        if not isinstance(self.operation, str) or not self.operation:
            raise ValueError(
                "operation must be '*', an operation name (PutRecords) or an X-Amz-Target "
                f"glob (Kinesis_20131202.*); got {self.operation!r}"
            )
        _check_number("probability", self.probability, 0.0, 1.0)
        if self.count is not None and (
            isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1
        ):
            raise ValueError(f"count must be None or an integer >= 1; got {self.count!r}")
        if (
            isinstance(self.delay_ms, bool)
            or not isinstance(self.delay_ms, int)
            or not 0 <= self.delay_ms <= 600_000
        ):
            raise ValueError(f"delay_ms must be an integer in 0..600000; got {self.delay_ms!r}")
        if self.fault in (Fault.DELAY, Fault.DELAY_RESPONSE) and self.delay_ms == 0:
            raise ValueError(f"delay_ms must be > 0 for fault {self.fault.value}")
        self._check_error_code()
        _check_number("failed_fraction", self.failed_fraction, 0.0, 1.0)
        if self.failed_fraction == 0.0:
            raise ValueError("failed_fraction must be in (0, 1]; got 0")
        self._check_failed_indices()
        if not isinstance(self.reset, bool):
            raise ValueError(f"reset must be true or false; got {self.reset!r}")  # noqa: TRY004

    def _check_error_code(self) -> None:
        if self.error_code is None:
            return
        allowed = _ERROR_CODES.get(self.fault)
        if allowed is None:
            kinds = ", ".join(k.value for k in _ERROR_CODES)
            raise ValueError(f"error_code applies only to faults {kinds}; not {self.fault.value}")
        if self.error_code not in allowed:
            raise ValueError(
                f"error_code for {self.fault.value} must be one of {', '.join(allowed)}; "
                f"got {self.error_code!r}"
            )

    def _check_failed_indices(self) -> None:
        if self.failed_indices is None:
            return
        if self.fault is not Fault.PARTIAL_FAILURE:
            raise ValueError("failed_indices applies only to fault partial_failure")
        indices = tuple(self.failed_indices)
        if not indices or any(
            isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in indices
        ):
            raise ValueError(
                f"failed_indices must be a non-empty list of integers >= 0; got {indices!r}"
            )
        object.__setattr__(self, "failed_indices", tuple(sorted(set(indices))))

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Rule:
        """Build a rule from its JSON form.

        Raises:
            ValueError: unknown keys, a missing ``fault`` or an invalid value.
        """
        if not isinstance(doc, Mapping):
            raise ValueError(f"a rule must be a JSON object; got {doc!r}")  # noqa: TRY004
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise ValueError(
                f"unknown rule keys {', '.join(unknown)}; allowed: {', '.join(sorted(known))}"
            )
        if "fault" not in doc:
            raise ValueError("fault is required")
        kwargs = dict(doc)
        if kwargs.get("failed_indices") is not None:
            if not isinstance(kwargs["failed_indices"], list | tuple):
                raise ValueError(
                    f"failed_indices must be a list of integers; got {kwargs['failed_indices']!r}"
                )
            kwargs["failed_indices"] = tuple(kwargs["failed_indices"])
        return cls(**kwargs)

    def to_json(self) -> RuleJson:
        """The JSON form accepted by :meth:`from_json`."""
        return RuleJson(
            fault=self.fault.value,
            operation=self.operation,
            probability=self.probability,
            count=self.count,
            delay_ms=self.delay_ms,
            error_code=self.error_code,
            failed_fraction=self.failed_fraction,
            failed_indices=None if self.failed_indices is None else list(self.failed_indices),
            reset=self.reset,
        )


def _check_number(name: str, value: object, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(f"{name} must be a number between {low} and {high}; got {value!r}")


def as_rule(rule: Rule | Mapping[str, Any]) -> Rule:
    """Accept a :class:`Rule` or its JSON form."""
    return rule if isinstance(rule, Rule) else Rule.from_json(rule)


class Decision(NamedTuple):
    """The rule that fired for one request, with that rule's generator for record choice."""

    position: int
    rule: Rule
    rng: random.Random


@dataclass
class _Armed:
    rule: Rule
    rng: random.Random
    fired: int = 0


@dataclass
class RuleBook:
    """The live rules, their remaining counts and generators; safe to use from any thread.

    Each rule draws from its own generator seeded by ``(seed, position)``, so a
    rule's choices for a given sequence of requests do not depend on other rules.
    """

    seed: int = 0
    _armed: list[_Armed] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def set_rules(self, rules: Iterable[Rule | Mapping[str, Any]], seed: int | None = None) -> None:
        """Replace every rule, re-arming counts and generators.

        Raises:
            ValueError: a rule in JSON form is invalid (nothing is replaced then).
        """
        parsed = [as_rule(r) for r in rules]
        with self._lock:
            if seed is not None:
                self.seed = seed
            self._armed = [
                _Armed(rule, random.Random(f"faultproxy:{self.seed}:{i}"))
                for i, rule in enumerate(parsed)
            ]

    def clear(self) -> None:
        """Remove every rule: the proxy passes everything through."""
        with self._lock:
            self._armed = []

    @property
    def rules(self) -> tuple[Rule, ...]:
        """The current rules, in order."""
        with self._lock:
            return tuple(a.rule for a in self._armed)

    def remaining(self) -> list[int | None]:
        """How many more times each rule may fire (``None``: no limit)."""
        with self._lock:
            return [None if a.rule.count is None else a.rule.count - a.fired for a in self._armed]

    def decide(self, target: str, *, splittable: bool) -> Decision | None:
        """Pick the first rule that fires for a request with this X-Amz-Target.

        ``splittable`` says whether the request can be partially failed (a JSON
        PutRecords or BatchWriteItem); partial-failure rules skip the others
        without spending a draw or a count.
        """
        with self._lock:
            for i, armed in enumerate(self._armed):
                rule = armed.rule
                if not operation_matches(rule.operation, target):
                    continue
                if rule.fault is Fault.PARTIAL_FAILURE and not splittable:
                    continue
                if rule.count is not None and armed.fired >= rule.count:
                    continue
                if rule.probability < 1.0 and armed.rng.random() >= rule.probability:
                    continue
                armed.fired += 1
                return Decision(i, rule, armed.rng)
        return None


def choose_failed_indices(total: int, rule: Rule, rng: random.Random) -> tuple[int, ...]:
    """Which of ``total`` records fail: the rule's explicit indices that exist, or a seeded
    sample of ``round(failed_fraction * total)`` records (at least one)."""
    if total <= 0:
        return ()
    if rule.failed_indices is not None:
        return tuple(i for i in rule.failed_indices if i < total)
    k = min(total, max(1, round(rule.failed_fraction * total)))
    return tuple(sorted(rng.sample(range(total), k)))
