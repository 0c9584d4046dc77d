"""The batch rules of the local event source mapping, driven by a scripted handler."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest

from emulators.esm_batch import Invocation, RetryPolicy, run_batch
from emulators.esm_events import Condition, Outcome, OutcomeKind, StreamRecord

Script = Callable[[list[str], int], Outcome]


def records(n: int, *, arrival_s: float = 1000.0) -> list[StreamRecord]:
    return [StreamRecord(f"{i:03d}", f"k{i}", b"x", arrival_s + i) for i in range(n)]


def seqs(batch: Sequence[StreamRecord]) -> list[str]:
    return [r.sequence_number for r in batch]


@dataclass
class FakePorts:
    """Records everything `run_batch` asks for; `script` decides each invocation's outcome."""

    script: Script
    now: float = 2000.0
    stop_after_retries: int | None = None
    invocations: list[list[str]] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)
    sent: list[tuple[list[str], Condition, int, OutcomeKind | None]] = field(default_factory=list)
    retries: list[int] = field(default_factory=list)
    bisections: list[tuple[list[str], list[str]]] = field(default_factory=list)

    def invoke(self, batch: Sequence[StreamRecord], invoke_count: int) -> Invocation:
        self.invocations.append(seqs(batch))
        return Invocation(self.script(seqs(batch), invoke_count), f"req-{len(self.invocations)}")

    def checkpoint(self, last: StreamRecord) -> None:
        self.checkpoints.append(last.sequence_number)

    def send_on_failure(
        self,
        batch: Sequence[StreamRecord],
        condition: Condition,
        invoke_count: int,
        last: Invocation | None,
    ) -> bool:
        self.sent.append(
            (seqs(batch), condition, invoke_count, None if last is None else last.outcome.kind)
        )
        return True

    def retrying(self, batch: Sequence[StreamRecord], retry: int, outcome: Outcome) -> bool:
        self.retries.append(retry)
        return self.stop_after_retries is None or len(self.retries) < self.stop_after_retries

    def bisected(self, halves: tuple[Sequence[StreamRecord], Sequence[StreamRecord]]) -> None:
        self.bisections.append((seqs(halves[0]), seqs(halves[1])))

    def now_s(self) -> float:
        return self.now


def ok(batch: list[str], count: int) -> Outcome:
    return Outcome.success()


def raise_on(poison: str) -> Script:
    def script(batch: list[str], count: int) -> Outcome:
        return Outcome.error("boom") if poison in batch else Outcome.success()

    return script


POLICY = RetryPolicy(
    maximum_retry_attempts=2, bisect_batch_on_function_error=False, maximum_record_age_in_seconds=-1
)


def test_success_checkpoints_the_last_record() -> None:
    ports = FakePorts(ok)
    assert run_batch(records(3), POLICY, ports)
    assert ports.invocations == [["000", "001", "002"]]
    assert ports.checkpoints == ["002"]
    assert ports.sent == []


def test_partial_failure_checkpoints_before_and_resumes_at_the_reported_record() -> None:
    # GIVEN a handler that reports record 002 failed on the first call only
    def script(batch: list[str], count: int) -> Outcome:
        if count == 1:
            return Outcome(OutcomeKind.PARTIAL, failed_index=batch.index("002"))
        return Outcome.success()

    ports = FakePorts(script)
    # WHEN the batch runs
    assert run_batch(records(5), POLICY, ports)
    # THEN 000-001 are checkpointed, 002-004 delivered again, and that was one retry
    assert ports.invocations == [["000", "001", "002", "003", "004"], ["002", "003", "004"]]
    assert ports.checkpoints == ["001", "004"]
    assert ports.retries == [1]


def test_partial_failure_at_the_first_record_retries_the_whole_batch() -> None:
    calls = iter([Outcome(OutcomeKind.PARTIAL, failed_index=0), Outcome.success()])
    ports = FakePorts(lambda batch, count: next(calls))
    assert run_batch(records(3), POLICY, ports)
    assert ports.invocations == [["000", "001", "002"]] * 2
    assert ports.checkpoints == ["002"]


def test_exhausted_retries_send_the_remaining_records_on_and_move_past_them() -> None:
    ports = FakePorts(raise_on("001"))
    assert run_batch(records(4), POLICY, ports)
    assert ports.invocations == [["000", "001", "002", "003"]] * 3  # 1 call + 2 retries
    assert ports.sent == [
        (["000", "001", "002", "003"], Condition.RETRY_ATTEMPTS_EXHAUSTED, 3, OutcomeKind.FAILED)
    ]
    assert ports.checkpoints == ["003"]
    assert ports.retries == [1, 2]


def test_zero_retries_sends_on_after_the_first_failure() -> None:
    ports = FakePorts(raise_on("000"))
    assert run_batch(records(2), POLICY._replace(maximum_retry_attempts=0), ports)
    assert ports.invocations == [["000", "001"]]
    assert ports.sent[0][:3] == (["000", "001"], Condition.RETRY_ATTEMPTS_EXHAUSTED, 1)


def test_partial_failures_exhausting_retries_send_only_the_unprocessed_tail() -> None:
    def script(batch: list[str], count: int) -> Outcome:
        return Outcome(OutcomeKind.PARTIAL, failed_index=batch.index("002"))

    ports = FakePorts(script)
    assert run_batch(records(4), POLICY, ports)
    assert ports.invocations == [["000", "001", "002", "003"], ["002", "003"], ["002", "003"]]
    assert ports.sent == [
        (["002", "003"], Condition.RETRY_ATTEMPTS_EXHAUSTED, 3, OutcomeKind.PARTIAL)
    ]
    assert ports.checkpoints == ["001", "003"]


def test_bisect_isolates_the_poison_record_without_using_the_retry_quota() -> None:
    # GIVEN 8 records, the sixth poisonous, bisect on, 2 retries
    ports = FakePorts(raise_on("005"))
    policy = POLICY._replace(bisect_batch_on_function_error=True)
    # WHEN the batch runs
    assert run_batch(records(8), policy, ports)
    # THEN halves run in order down to the poison record, which alone is retried twice
    assert ports.invocations == [
        ["000", "001", "002", "003", "004", "005", "006", "007"],
        ["000", "001", "002", "003"],
        ["004", "005", "006", "007"],
        ["004", "005"],
        ["004"],
        ["005"],
        ["005"],
        ["005"],
        ["006", "007"],
    ]
    assert ports.bisections == [
        (["000", "001", "002", "003"], ["004", "005", "006", "007"]),
        (["004", "005"], ["006", "007"]),
        (["004"], ["005"]),
    ]
    assert ports.sent == [(["005"], Condition.RETRY_ATTEMPTS_EXHAUSTED, 3, OutcomeKind.FAILED)]
    assert ports.checkpoints == ["003", "004", "005", "007"]
    assert ports.retries == [1, 2]


def test_bisect_does_not_split_a_partial_failure() -> None:
    calls = iter([Outcome(OutcomeKind.PARTIAL, failed_index=1), Outcome.success()])
    ports = FakePorts(lambda batch, count: next(calls))
    assert run_batch(records(4), POLICY._replace(bisect_batch_on_function_error=True), ports)
    assert ports.invocations == [["000", "001", "002", "003"], ["001", "002", "003"]]
    assert ports.bisections == []


def test_infinite_retries_go_on_until_the_mapping_stops() -> None:
    ports = FakePorts(raise_on("000"), stop_after_retries=50)
    assert not run_batch(records(1), POLICY._replace(maximum_retry_attempts=-1), ports)
    assert len(ports.invocations) == 50
    assert ports.checkpoints == []
    assert ports.sent == []


def test_records_past_the_maximum_age_are_sent_on_without_being_invoked() -> None:
    # GIVEN records that arrived at 1000..1003 s, a 60 s age limit, and the time 1061.5 s
    ports = FakePorts(ok, now=1061.5)
    policy = POLICY._replace(maximum_record_age_in_seconds=60)
    # WHEN the batch runs
    assert run_batch(records(4), policy, ports)
    # THEN 000 and 001 (61.5 and 60.5 s old) go on, the others are invoked
    assert ports.sent == [(["000", "001"], Condition.RECORD_AGE_EXCEEDED, 0, None)]
    assert ports.invocations == [["002", "003"]]
    assert ports.checkpoints == ["001", "003"]


def test_records_that_age_out_while_retrying_are_sent_on() -> None:
    ports = FakePorts(raise_on("000"), now=1000.0)
    policy = POLICY._replace(maximum_retry_attempts=-1, maximum_record_age_in_seconds=60)

    def script(batch: list[str], count: int) -> Outcome:
        ports.now += 30  # each attempt takes 30 s
        return Outcome.error("boom")

    ports.script = script
    assert run_batch(records(1), policy, ports)
    # ages at the three calls: 0, 30 and 60 s (60 is not older than 60); then 90 s
    assert ports.invocations == [["000"], ["000"], ["000"]]
    assert ports.sent == [(["000"], Condition.RECORD_AGE_EXCEEDED, 3, OutcomeKind.FAILED)]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 100])
def test_every_record_is_checkpointed_exactly_once_in_order(size: int) -> None:
    ports = FakePorts(raise_on("001"))
    policy = POLICY._replace(bisect_batch_on_function_error=True, maximum_retry_attempts=1)
    assert run_batch(records(size), policy, ports)
    assert ports.checkpoints == sorted(ports.checkpoints)
    assert ports.checkpoints[-1] == f"{size - 1:03d}"
