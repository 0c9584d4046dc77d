"""The Lambda consumer: applies binlog records from a Kinesis event source mapping to the
primary tables, parks poison records in the dead-letter store, and reports the first
record to deliver again (`handler.handle`; the core is `consumer.Consumer`)."""
