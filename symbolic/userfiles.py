"""Reading and writing the files a user names without hanging or losing a file.

A path can be a FIFO (reading waits for a writer forever), a device such as /dev/zero (reading
never ends) or a huge file; each reader here takes regular files only and reads at most a
bound, so a bad path is refused within moments with one line naming it.

An output path (``--save``, ``--history``, ``--plot``, ``draw -o``, ``generate -o``) is checked
before the work starts (``check_output``): a device or pipe, an input of the same command, or
a file of another kind (a graph file where weights would go) is refused, not replaced; and it
is written to a temporary file beside it and renamed (``write_atomically``), so a full disk
leaves the old file as it was.
"""
from __future__ import annotations

import os
import re
import stat
import tempfile
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
    except ValueError as exc:  # an integer of more than 4300 digits (Python's conversion limit)
        raise SympropError(f"{where}: a number in the file is too long ({exc.args[0].split(':')[0]})") from None


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


# --- writing -------------------------------------------------------------------------------

# kind of output -> (its name in messages, how a file of that kind starts): a file already at
# an output path is replaced only when it is of the kind being written, or empty
OUTPUT_KINDS = {
    "weights": ("weights file (.npz)", (b"PK\x03\x04",)),
    "history": ("history file (JSON)", (b"{",)),
    "picture": ("picture (PNG, SVG, PDF or PostScript)", (b"\x89PNG", b"<?xml", b"<svg", b"%PDF", b"%!PS")),
    "module": ("generated module", (b"# ",)),
    "report": ("benchmark report (JSON)", (b"{",)),
    "summary": ("benchmark summary (Markdown)", (b"`",)),
}
SNIFF_BYTES = 1024


def check_output(path, option: str, kind: str, inputs=(), make_folders: bool = False) -> Path:
    """Fail before the work, not after it, when ``path`` must not be written: a folder, a
    missing or unwritable folder, something that is not a regular file (a device such as
    /dev/full, a pipe), one of the command's ``inputs`` (paths), or a file of another kind.
    ``make_folders``: the writer creates a missing folder (generate -o), so do not ask for it."""
    path = Path(path)
    noun, signatures = OUTPUT_KINDS[kind]
    folder = path.parent
    try:
        status = os.stat(path)
    except FileNotFoundError:
        status = None
    except OSError as exc:  # a folder on the way that cannot be entered, a loop of links
        raise SympropError(f"{option} {path}: cannot write there ({exc.strerror or exc})") from None
    if status is not None and stat.S_ISDIR(status.st_mode):
        raise SympropError(f"{option} {path} is a folder; name a file in it, e.g. {path / 'out'}")
    if not folder.is_dir() and not make_folders:
        raise SympropError(f"{option} {path}: folder {folder} does not exist")
    if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
        raise SympropError(f"{option} {path}: folder {folder} is not writable")
    if status is None:
        return path
    if not stat.S_ISREG(status.st_mode):
        raise SympropError(f"{option} {path} is not a regular file (a device, pipe or socket); "
                           "name a new file or a regular one")
    for given in inputs:
        if given is not None and Path(given).exists() and os.path.samefile(given, path):
            raise SympropError(f"{option} {path} is also an input of this command; writing it would "
                               "destroy that input: name another file")
    if status.st_size:
        with open_regular(path, noun) as stream:
            head = stream.read(SNIFF_BYTES)
        if not any(head.startswith(signature) for signature in signatures) or (
                kind == "module" and b"GENERATED FILE" not in head):
            raise SympropError(f"{option} {path}: the file there is not a {noun}, and writing would "
                               "replace it; remove it first or name another file")
    return path


def write_atomically(path, option: str, write) -> None:
    """write(binary stream) into a temporary file in path's folder, then rename it over path
    (with the umask's mode, not mkstemp's 0600): a failed write (a full disk) leaves an
    existing file there as it was, and says so in one line naming the option."""
    path = Path(path)
    try:
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise SympropError(f"{option} {path}: cannot write ({exc.strerror or exc})") from None
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, creation_mode())
        os.replace(temporary, path)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise SympropError(f"{option} {path}: cannot write ({exc.strerror or exc}); "
                           "an existing file there is unchanged") from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def creation_mode() -> int:
    """0666 less the umask, what open() would give (mkstemp's files are 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask
