"""Placeholder for the `lazyrep bench` commands (being written)."""

from __future__ import annotations

import click


@click.group()
def bench() -> None:
    """(being written)"""
