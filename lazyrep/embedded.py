"""The embedded default: commands run against local emulators they start themselves.

Only `--aws` makes a command use the caller's own AWS configuration; otherwise
nothing leaves loopback, whatever credentials the machine holds.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from emulators.stack import LocalStack


@contextmanager
def embedded_stack(*, use_aws: bool) -> Iterator[LocalStack | None]:
    """Start the local stack and point this process's AWS SDKs at it, then restore."""
    if use_aws:
        yield None
        return
    saved = dict(os.environ)
    with LocalStack.start() as stack:
        os.environ.update(stack.env)
        try:
            yield stack
        finally:
            os.environ.clear()
            os.environ.update(saved)
