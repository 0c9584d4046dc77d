"""The producer SDK: application code writes DynamoDB actions to the binlog stream.

`Producer` (boto3, thread-safe) and `AsyncProducer` (aiobotocore, shareable
between tasks) have the same methods; each action's future gives its shard id and
sequence number, the position an operator can replay from.
"""

from producer.aio import AsyncProducer
from producer.config import ProducerConfig
from producer.futures import ActionFuture
from producer.results import ActionResult, DeliveryError, FailedAction, ProducerClosedError
from producer.sync import Producer

__all__ = [
    "ActionFuture",
    "ActionResult",
    "AsyncProducer",
    "DeliveryError",
    "FailedAction",
    "Producer",
    "ProducerClosedError",
    "ProducerConfig",
]
