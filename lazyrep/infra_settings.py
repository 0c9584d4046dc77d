"""What the templates need beyond the topology: the mapping's settings, sizes, alarms.

Defaults follow docs/LAMBDA.md (event source mapping) and docs/ECS.md (the worker
task). Everything is validated here, naming the field and the range, so a wrong
flag fails before a template is written instead of during a stack update.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from binlog.topology import Topology
from kcl_consumer.properties import ECS_MAX_STOP_TIMEOUT_S, SHUTDOWN_MARGIN_MS

_KMS_KEY_ARN = re.compile(r"arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+")
# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS = frozenset(
    {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
     2922, 3288, 3653}
)  # fmt: skip
# Fargate's CPU units and the memory (MiB) each allows.
FARGATE_MEMORY_MB: dict[int, range] = {
    256: range(512, 2049, 512),
    512: range(1024, 4097, 1024),
    1024: range(2048, 8193, 1024),
    2048: range(4096, 16385, 1024),
    4096: range(8192, 30721, 1024),
}
MIN_STOP_TIMEOUT_S = SHUTDOWN_MARGIN_MS // 1000 + 5


def _check(name: str, value: int | float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name} must be in {low:g}..{high:g}, got {value:g}")


@dataclass(frozen=True, slots=True)
class InfraSettings:
    """Knobs of the generated templates (see docs/DEPLOY.md).

    maximum_retry_attempts and maximum_record_age_s: -1 is infinite (the recommended
    default: records wait for an outage to end instead of being skipped).
    stop_timeout_s: the worker container's stopTimeout; it must equal the image's
    STOP_TIMEOUT build arg, whose properties set shutdownGraceMillis 10 s below it.
    """

    stream_kms_key_arn: str | None = None
    lambda_timeout_s: int = 60
    lambda_memory_mb: int = 512
    batch_size: int = 500
    batching_window_s: int = 1
    parallelization_factor: int = 1
    maximum_retry_attempts: int = -1
    maximum_record_age_s: int = -1
    primary_iterator_age_alarm_s: int = 900
    replica_lag_alarm_fraction: float = 0.8
    stop_timeout_s: int = 60
    task_cpu: int = 512
    task_memory_mb: int = 1024
    desired_tasks: int = 2
    log_retention_days: int = 30

    def __post_init__(self) -> None:
        if self.stream_kms_key_arn is not None and not _KMS_KEY_ARN.fullmatch(
            self.stream_kms_key_arn
        ):
            raise ValueError(
                "stream_kms_key_arn must be a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID), "
                f"got {self.stream_kms_key_arn!r}"
            )
        _check("lambda_timeout_s", self.lambda_timeout_s, 1, 900)
        _check("lambda_memory_mb", self.lambda_memory_mb, 128, 10_240)
        _check("batch_size", self.batch_size, 1, 10_000)
        _check("batching_window_s", self.batching_window_s, 0, 300)
        _check("parallelization_factor", self.parallelization_factor, 1, 10)
        _check("maximum_retry_attempts", self.maximum_retry_attempts, -1, 10_000)
        if self.maximum_record_age_s != -1:
            _check("maximum_record_age_s", self.maximum_record_age_s, 60, 604_800)
        _check("primary_iterator_age_alarm_s", self.primary_iterator_age_alarm_s, 60, 31_536_000)
        _check("replica_lag_alarm_fraction", self.replica_lag_alarm_fraction, 0.1, 1.0)
        _check("stop_timeout_s", self.stop_timeout_s, MIN_STOP_TIMEOUT_S, ECS_MAX_STOP_TIMEOUT_S)
        if self.task_cpu not in FARGATE_MEMORY_MB:
            raise ValueError(f"task_cpu must be one of {sorted(FARGATE_MEMORY_MB)}")
        if self.task_memory_mb not in FARGATE_MEMORY_MB[self.task_cpu]:
            allowed = FARGATE_MEMORY_MB[self.task_cpu]
            raise ValueError(
                f"task_memory_mb must be {allowed.start}..{allowed.stop - 1} in steps of "
                f"{allowed.step} for task_cpu {self.task_cpu}, got {self.task_memory_mb}"
            )
        _check("desired_tasks", self.desired_tasks, 0, 10_000)
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            raise ValueError(
                f"log_retention_days must be one of {sorted(LOG_RETENTION_DAYS)} "
                "(CloudWatch Logs' periods)"
            )

    @property
    def shutdown_grace_ms(self) -> int:
        """The image's shutdownGraceMillis for this stop timeout (kcl_consumer.properties)."""
        return self.stop_timeout_s * 1000 - SHUTDOWN_MARGIN_MS

    def check_against(self, topology: Topology) -> None:
        """Settings that depend on the topology.

        Raises:
            ValueError: a finite maximum record age would let Lambda give up on records
                that `lazyrep replay` can no longer read (retention minus the margin).
        """
        if self.maximum_record_age_s == -1:
            return
        limit_s = int((topology.stream.retention_hours - topology.safety_margin_hours) * 3600)
        if self.maximum_record_age_s > limit_s:
            raise ValueError(
                f"maximum_record_age_s {self.maximum_record_age_s} exceeds the stream's "
                f"retention minus the safety margin ({limit_s} s): records Lambda gives up on "
                "must still be in the stream to replay"
            )
