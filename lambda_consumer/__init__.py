"""The Lambda handler that applies binlog records to the primary tables (issue 3)."""
