"""Where the installed tools live: the cache dir, kinesalite, nghttpx, moto server.

scripts/bootstrap.py installs everything here; this module only finds it and, when
something is missing, says which command fixes it. The cache dir rule is repeated in
scripts/bootstrap.py (it runs with the system Python, before this package is installed).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

BOOTSTRAP_HINT = "run `make bootstrap` (or `python3 scripts/bootstrap.py`)"


class MissingToolError(RuntimeError):
    """A tool the local stack or the KCL needs is not installed; the message names the fix."""

    def __init__(self, tool: str, fix: str = BOOTSTRAP_HINT, *, looked_in: str = "") -> None:
        where = f" (looked in {looked_in})" if looked_in else ""
        super().__init__(f"{tool} not found{where}: {fix}")
        self.tool = tool
        self.fix = fix


def cache_dir() -> Path:
    """Return the shared cache (npm, Maven, KCL jars): outside the repo, kept across clones."""
    configured = os.environ.get("LAZYREP_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "lazy-replication"


def node_binary() -> str:
    """Return the `node` executable (Node 18+ is a prerequisite, not installed by us)."""
    found = shutil.which("node")
    if found is None:
        raise MissingToolError("node", "install Node.js 18+ (e.g. `apt-get install -y nodejs`)")
    return found


def kinesalite_module() -> Path:
    """Return kinesalite's package dir, installed by the bootstrap with `npm ci` in the cache."""
    module = cache_dir() / "node" / "node_modules" / "kinesalite"
    if not (module / "index.js").is_file():
        raise MissingToolError("kinesalite", looked_in=str(module))
    return module


def nghttpx_binary() -> str:
    """Return nghttpx (Debian package nghttp2-proxy); /usr/sbin is often not on a user's PATH."""
    found = shutil.which("nghttpx") or shutil.which("nghttpx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise MissingToolError(
            "nghttpx", f"{BOOTSTRAP_HINT}, or `apt-get install -y nghttp2-proxy`"
        )
    return found


def moto_server_command() -> list[str]:
    """Return the argv prefix that runs moto server with this interpreter (moto[server] extra)."""
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
        raise MissingToolError("moto[server] in this Python environment")
    return [sys.executable, "-m", "moto.server"]
