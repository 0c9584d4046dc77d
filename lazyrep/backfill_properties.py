"""Set a few keys in a KCL `.properties` file, keeping every other line as it is.

`lazyrep backfill --write-properties FILE` puts the start position into the replica's
properties: each key's first logical line (with its continuation lines) is replaced
by `key = value`, later repeats of the key are dropped (java.util.Properties would
let the last one win), and keys the file lacks are appended. Keys to remove have
their first logical line replaced by a comment saying why, and their repeats
dropped. Comments, blank lines, the order and the spelling of every other entry
stay. The file is replaced atomically, and read back as Java reads it to check that
only those keys changed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from kcl_consumer.properties import parse_properties

_WHITESPACE = " \t\f"


def _continues(natural: str) -> bool:
    """An odd number of trailing backslashes continues a logical line."""
    body = natural.rstrip("\r\n")
    return (len(body) - len(body.rstrip("\\"))) % 2 == 1


def set_keys(
    text: str,
    values: Mapping[str, str],
    *,
    header: str = "",
    remove: Mapping[str, str] | None = None,
) -> str:
    """`text` with `values` set and the keys of `remove` removed (see the module
    docstring); `header` comments appended keys, `remove[key]` is the comment that
    takes the removed key's place.

    Raises:
        ValueError: a value spans lines, or the result does not read back as expected.
    """
    remove = remove or {}
    for key, value in [*values.items(), *remove.items()]:
        if any(c in key + value for c in "\r\n") or not key or key[0] in "#!":
            raise ValueError(f"cannot write {key!r} = {value!r} as one properties line")
    if set(values) & set(remove):
        raise ValueError(f"cannot both set and remove {sorted(set(values) & set(remove))}")
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    done: set[str] = set()
    index = 0
    while index < len(lines):
        line = lines[index]
        stripped = line.lstrip(_WHITESPACE)
        if not stripped.strip() or stripped[0] in "#!":
            out.append(line)  # blank or comment: never continued
            index += 1
            continue
        logical = [line]
        while _continues(lines[index]) and index + 1 < len(lines):
            index += 1
            logical.append(lines[index])
        index += 1
        parsed_key = next(iter(parse_properties("".join(logical))), None)
        ending = "\r\n" if logical[-1].endswith("\r\n") else "\n"
        if parsed_key is None or (parsed_key not in values and parsed_key not in remove):
            out.extend(logical)
        elif parsed_key in done:
            pass  # a repeat: dropped
        elif parsed_key in remove:
            out.append(f"# {remove[parsed_key]}{ending}")
            done.add(parsed_key)
        else:
            out.append(f"{parsed_key} = {values[parsed_key]}{ending}")
            done.add(parsed_key)
    missing = [key for key in values if key not in done]
    if missing:
        if out and not out[-1].endswith(("\n", "\r")):
            out[-1] += "\n"
        if header:
            out.append(("\n" if out else "") + f"# {header}\n")
        out += [f"{key} = {values[key]}\n" for key in missing]
    result = "".join(out)
    expected = {k: v for k, v in parse_properties(text).items() if k not in remove} | dict(values)
    if parse_properties(result) != expected:
        raise ValueError("the edited properties do not read back as expected")
    return result


def write_keys(
    path: Path,
    values: Mapping[str, str],
    *,
    header: str = "",
    remove: Mapping[str, str] | None = None,
) -> None:
    """Set `values` (and remove `remove`) in the properties file at `path`, replacing it
    atomically.

    Raises:
        OSError: the file cannot be read or written.
        ValueError: see `set_keys`.
    """
    # java.util.Properties.load(InputStream) reads ISO-8859-1; bytes round-trip exactly.
    text = path.read_bytes().decode("latin-1")
    result = set_keys(text, values, header=header, remove=remove)
    mode = path.stat().st_mode
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(result.encode("latin-1"))
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
