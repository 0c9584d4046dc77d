"""A minimal KCL record processor for the daemon tests: appends what it gets to a file.

Run by the MultiLangDaemon as `python echo_processor.py OUTPUT_FILE`. stdout is the
daemon's protocol channel, so nothing but amazon_kclpy may write there; logs go to stderr.
Each line of OUTPUT_FILE is one JSON object: a record, or a lifecycle event.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from amazon_kclpy import kcl
from amazon_kclpy.v3 import processor


class EchoProcessor(processor.RecordProcessorBase):  # type: ignore[misc]
    """Writes every record, checkpoints after each batch and at shard end and shutdown."""

    def __init__(self, output: str) -> None:
        self.output = output
        self.shard_id = "?"

    def write(self, **event: Any) -> None:
        with open(self.output, "a") as out:
            out.write(json.dumps({"shard": self.shard_id, **event}) + "\n")

    def initialize(self, initialize_input: Any) -> None:
        self.shard_id = initialize_input.shard_id
        self.write(event="initialize")
        print(f"echo processor: initialize {self.shard_id}", file=sys.stderr)

    def process_records(self, process_records_input: Any) -> None:
        for record in process_records_input.records:
            self.write(
                event="record",
                partition_key=record.partition_key,
                sequence_number=record.sequence_number,
                data=record.binary_data.decode(),
            )
        process_records_input.checkpointer.checkpoint()

    def lease_lost(self, lease_lost_input: Any) -> None:
        self.write(event="lease_lost")

    def shard_ended(self, shard_ended_input: Any) -> None:
        self.write(event="shard_ended")
        shard_ended_input.checkpointer.checkpoint()

    def shutdown_requested(self, shutdown_requested_input: Any) -> None:
        self.write(event="shutdown_requested")
        shutdown_requested_input.checkpointer.checkpoint()


if __name__ == "__main__":
    kcl.KCLProcess(EchoProcessor(sys.argv[1])).run()
