"""Placeholder for the `lazyrep local` commands (being written)."""

from __future__ import annotations

import click


@click.group()
def local() -> None:
    """(being written)"""
