"""Writing generated modules: header, input hash, atomic writes, staleness checks.

Printing (``layer_kernels``, ``network``) returns text; only this module touches files.
A generated file is rewritten only when its text changes, through a temporary file and a
rename, so an interrupted run leaves the old file intact.
"""
from __future__ import annotations

import difflib
import functools
import glob
import hashlib
import itertools
import os
import stat
import tempfile
import time
from pathlib import Path

from symprop.symbolic.errors import SympropError
from symprop.symbolic.userfiles import creation_mode

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ROOT / "generated"

# The packages whose sources shape what the generator writes.
GENERATOR_FOLDERS = ("symbolic", "codegen")


# One place decides the JIT flags of every generated kernel. fastmath stays off: it changes
# results and paid only on reduction loops (measured; see benchmarks/). cache=True is added
# by the generated `jit` wrapper, which falls back to no cache where none can be written.
JIT_FLAGS = 'dict(fastmath=False, error_model="numpy", nogil=True)'

REGENERATE_COMMAND = "symprop generate"


@functools.cache
def sympy_version() -> str:
    """SymPy's version as its installed metadata gives it: the hashes name the version that
    derives the kernels without importing SymPy, which a warm start does not need."""
    from importlib.metadata import version

    return version("sympy")


def generator_fingerprint() -> str:
    """sha256 over the sources of symbolic/ and codegen/ and the SymPy version. It names the
    cache folder of modules generated at run time, so a changed generator writes them afresh;
    committed headers do not carry it, so a comment edit does not churn every generated file."""
    return _fingerprint(ROOT)


@functools.lru_cache(maxsize=4)
def _fingerprint(root: Path) -> str:
    """Read once per process: the sources do not change under a running generator."""
    digest = hashlib.sha256()
    for folder in GENERATOR_FOLDERS:
        for path in sorted((root / folder).rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    digest.update(f"sympy {sympy_version()}".encode())
    return digest.hexdigest()[:16]


def inputs_hash(*inputs: str) -> str:
    """sha256 over what a module is generated from: its kind, its spec or graph file, its ops'
    definitions and the SymPy version that derives them. It changes when the source changes;
    a change of the generator itself shows in the text, which `generate --check` compares."""
    digest = hashlib.sha256()
    digest.update(f"sympy {sympy_version()}".encode())
    for item in inputs:
        digest.update(len(item).to_bytes(8, "little"))  # ("ab", "c") and ("a", "bc") differ
        digest.update(item.encode())
    return digest.hexdigest()[:16]


def body_hash(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def header(title: str, generator: str, command: str, inputs: list[str], input_hash: str, body: str) -> str:
    """The comment block on top of every generated file (no timestamps: output is deterministic)."""
    lines = [
        f"# {title}",
        f"# GENERATED FILE - do not edit. Written by symprop's {generator}.",
        f"# Regenerate with: {command}",
    ]
    lines += [f"# Input: {item}" for item in inputs]
    lines += [
        f"# Input hash: {input_hash} (the inputs above, their ops' definitions and sympy {sympy_version()})",
        f"# Body hash: {body_hash(body)}",
    ]
    return "\n".join(lines) + "\n"


def header_field(text: str, field: str) -> str | None:
    """The value of a '# Field: value' line in a generated file's header."""
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        if line.startswith(f"# {field}: "):
            return line[len(f"# {field}: "):].split(" ")[0]
    return None


def recorded_body_hash(text: str) -> str | None:
    """The body hash a generated file's header records, if the header is valid, and
    None otherwise. Valid: the file starts with its comment block, whose second line is the
    GENERATED FILE line and whose last line is the only '# Body hash:' line. A line added
    before the header or a deleted hash line makes it invalid, so it cannot hide an edit.
    (The PRELUDE's _warn_if_edited applies the same rule inside each generated module.)"""
    lines = text.splitlines()
    header = list(itertools.takewhile(lambda line: line.startswith("#"), lines))
    hashes = [line for line in header if line.startswith("# Body hash: ")]
    if len(header) < 2 or not header[1].startswith("# GENERATED FILE") or hashes != header[-1:]:
        return None
    return hashes[0].split()[3] if len(hashes[0].split()) == 4 else None


def generated_body(text: str) -> str:
    """Everything after the header comment block."""
    lines = text.splitlines(keepends=True)
    return "".join(lines[len(list(itertools.takewhile(lambda line: line.startswith("#"), lines))):])


def is_current(path: Path, input_hash: str) -> bool:
    """Whether the generated file at path was written from these inputs and is unedited,
    judged from its header alone (no SymPy printing): the input hash must be input_hash and
    the body hash must match the body. Files generated at run time live in a cache folder
    named after the generator's fingerprint, so a changed generator never finds them current."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return (header_field(text, "Input hash") == input_hash
            and recorded_body_hash(text) == body_hash(generated_body(text)))


LEFTOVER_AGE_SECONDS = 600  # a temporary file this old belongs to no running generation


def remove_leftovers(path: Path) -> None:
    """Remove temporary files that an interrupted (killed) write of path left behind. Only
    old ones: a fresh one may belong to another process writing the same file right now."""
    now = time.time()
    for leftover in Path(path).parent.glob(f".{glob.escape(Path(path).name)}.*.tmp"):
        try:
            if now - leftover.stat().st_mtime > LEFTOVER_AGE_SECONDS:
                leftover.unlink()
        except OSError:
            pass


def write_if_changed(path: Path, text: str) -> bool:
    """Write text to path atomically (a temporary file renamed over it); return True if the
    file changed. The old file is compared as bytes, so a corrupt or binary file is replaced,
    not a crash. Existing files keep their mode; new ones get the umask's."""
    path = Path(path)
    data = text.encode("utf-8")
    try:
        if path.read_bytes() == data:
            return False
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = creation_mode()  # mkstemp's 0600 would make generated modules private
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return True


def stale_files(expected: dict[Path, str], directory: Path) -> list[tuple[Path, str]]:
    """[(path, unified diff)] for each file that differs from what the generator would write,
    plus generated modules in the directory that the generator would not write at all."""
    problems = []
    for path, text in sorted(expected.items()):
        current = path.read_bytes().decode("utf-8", "replace") if path.is_file() else ""
        if current != text:
            diff = "".join(difflib.unified_diff(current.splitlines(True), text.splitlines(True),
                                                f"{path} (on disk)", f"{path} (generator now)"))
            problems.append((path, diff or f"{path} is missing\n"))
    for path in sorted(Path(directory).glob("*.py")):
        if path not in expected and path.name != "__init__.py":
            problems.append((path, f"{path} was not written by the generator (remove it)\n"))
    return problems


def cache_root() -> Path:
    """Where modules generated at run time live: $SYMPROP_CACHE, or ~/.cache/symprop."""
    return Path(os.environ.get("SYMPROP_CACHE") or Path.home() / ".cache" / "symprop")


def cache_folder(kind: str) -> Path:
    """The cache folder of one kind of run-time module ("networks", "graphs") for this
    generator: a generator that prints differently writes into a folder of its own."""
    return cache_root() / kind / generator_fingerprint()


def import_generated(module_name: str, path: Path, repair: str = f"rewrite it with: {REGENERATE_COMMAND}"):
    """Import a generated module from its file; a corrupt file (garbage bytes, a syntax error)
    is one line naming it and how to rewrite it."""
    import importlib.util
    import sys

    module_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except (SyntaxError, ValueError, UnicodeDecodeError) as exc:
        del sys.modules[module_name]
        raise SympropError(f"{path} is corrupt ({type(exc).__name__}: {exc}); {repair}") from None
    return module
