"""Placeholder for the `lazyrep demo` commands (being written)."""

from __future__ import annotations

import click


@click.group()
def demo() -> None:
    """(being written)"""
