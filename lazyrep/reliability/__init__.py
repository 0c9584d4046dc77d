"""The reliability suite: scenarios that hurt each path on the local stack and count the damage.

`lazyrep bench reliability` runs it; docs/RELIABILITY.md has the scenarios, their
latest figures and how to run each one. The pieces: framework (Scenario, Result,
Scale), workload and model (what is produced, and the reference it must equal),
accounting (lost / applied twice / diverged), primary (the primary-path harness),
and one module per family of scenarios, listed in catalog.
"""
