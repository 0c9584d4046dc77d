"""The `lazyrep` command line: local stack, benchmarks, demo, and (later) replay and status."""
