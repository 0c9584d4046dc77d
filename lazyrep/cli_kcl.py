"""Placeholder for the `lazyrep kcl` commands (being written)."""

from __future__ import annotations

import click


@click.group()
def kcl() -> None:
    """(being written)"""
