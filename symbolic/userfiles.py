"""Reading the files a user names (network, claims, values, IDX, weights) without hanging.

A path can be a FIFO (reading waits for a writer forever), a device such as /dev/zero (reading
never ends) or a huge file; each reader here takes regular files only and reads at most a
bound, so a bad path is refused within moments with one line naming it.
"""
from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from .errors import SympropError

TEXT_LIMIT = 10 * 2**20  # network, claims and values files are a few kilobytes


def open_regular(path, what: str):
    """An open binary handle on path, after checking it is a regular file (not a FIFO or device).

    O_NONBLOCK keeps open() itself from waiting on a FIFO before fstat can see what it is."""
    path = Path(path)
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise SympropError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    try:
        kind = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(kind):
            noun = "a folder" if stat.S_ISDIR(kind) else "not a regular file (a pipe, device or socket)"
            raise SympropError(f"{path}: the {what} is {noun}")
        if hasattr(os, "set_blocking"):
            os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def read_bytes(path, what: str, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes."""
    with open_regular(path, what) as stream:
        try:
            data = stream.read(limit + 1)
        except OSError as exc:
            raise SympropError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise SympropError(f"{path}: the {what} is larger than {limit:,} bytes")
    return data


def read_text(path, what: str, limit: int = TEXT_LIMIT) -> str:
    """The UTF-8 text of a regular file of at most ``limit`` bytes."""
    data = read_bytes(path, what, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SympropError(f"{path}: the {what} is not UTF-8 text (byte {exc.start})") from None


def parse_toml(text: str, where: str) -> dict:
    """tomllib.loads with every failure as a SympropError: a syntax error, and nesting deep
    enough (500 '[') to exhaust tomllib's recursion."""
    import tomllib
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SympropError(f"{where}: TOML syntax error: {exc}") from None
    except RecursionError:
        raise SympropError(f"{where}: TOML nested too deeply") from None


def is_toml_with(path, pattern: str, what: str) -> bool:
    """True for a readable .toml file with a line matching ``pattern`` (a file kind's own
    section or field). Decided on the text, so a file with a TOML mistake still gets the
    messages of its own kind."""
    path = Path(path)
    if path.suffix != ".toml" or not path.is_file():
        return False
    try:
        text = read_text(path, what)
    except SympropError:
        return False
    return re.search(pattern, text, re.MULTILINE) is not None
