"""Writing generated modules: header, input hash, atomic writes, staleness checks.

Printing (``layer_kernels``, ``network``) returns text; only this module touches files.
A generated file is rewritten only when its text changes, through a temporary file and a
rename, so an interrupted run leaves the old file intact.
"""
from __future__ import annotations

import ast
import difflib
import hashlib
import itertools
import os
import tempfile
from pathlib import Path

import sympy

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ROOT / "generated"

# The generator's entry module. What it writes depends on it and on every project module it
# imports, directly or not; generator_inputs() finds them from the import statements.
GENERATOR_ENTRY = "codegen/generate.py"
PACKAGE_FOLDERS = {"symprop.symbolic": "symbolic", "symprop.codegen": "codegen"}


def _imported_files(relative: str) -> set[str]:
    """The symbolic/ and codegen/ files that one of them imports (absolute or relative)."""
    folder = relative.split("/")[0]
    found = set()
    for node in ast.walk(ast.parse((ROOT / relative).read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [(alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = tuple(alias.name for alias in node.names)
            if node.level:
                targets = [(".".join(["symprop", folder] + ([node.module] if node.module else [])), names)]
            else:
                targets = [(node.module or "", names)]
        else:
            continue
        for module, names in targets:
            for package, package_folder in PACKAGE_FOLDERS.items():
                if module != package and not module.startswith(package + "."):
                    continue
                path = "/".join([package_folder, *module[len(package) + 1:].split(".")]) if module != package \
                    else package_folder
                for candidate in [path + ".py", *(f"{path}/{name}.py" for name in names)]:
                    if (ROOT / candidate).is_file():
                        found.add(candidate)
    return found


def generator_inputs() -> list[str]:
    """Every file whose content decides what the generator writes: the entry module and the
    symbolic/ and codegen/ modules it imports, transitively. Found, not hand-kept, so a new
    module cannot be forgotten; a module no kernel depends on (the checker) is left out."""
    seen, todo = set(), [GENERATOR_ENTRY]
    while todo:
        relative = todo.pop()
        if relative not in seen:
            seen.add(relative)
            todo += sorted(_imported_files(relative) - seen)
    return sorted(seen)


# One place decides the JIT flags of every generated kernel. fastmath stays off: it changes
# results and paid only on reduction loops (measured; see benchmarks/). cache=True is added
# by the generated `jit` wrapper, which falls back to no cache where none can be written.
JIT_FLAGS = 'dict(fastmath=False, error_model="numpy", nogil=True)'

REGENERATE_COMMAND = "symprop generate"


def inputs_hash(*extra: str) -> str:
    """sha256 over the generator's sources, the SymPy version and any extra inputs (a spec)."""
    digest = hashlib.sha256()
    for relative in generator_inputs():
        digest.update(relative.encode())
        digest.update((ROOT / relative).read_bytes())
    digest.update(f"sympy {sympy.__version__}".encode())
    for item in extra:
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
        f"# Input hash: {input_hash} (generator sources and sympy {sympy.__version__})",
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


def is_current(path: Path, input_hash: str) -> bool:
    """Whether the generated file at path is what the generator would write now, judged from
    its header alone: the input hash (generator sources, SymPy's version, the spec) must be
    input_hash and the body hash must match the body (no hand edits)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    lines = text.splitlines(keepends=True)
    body = "".join(lines[len(list(itertools.takewhile(lambda line: line.startswith("#"), lines))):])
    return header_field(text, "Input hash") == input_hash and header_field(text, "Body hash") == body_hash(body)


def write_if_changed(path: Path, text: str) -> bool:
    """Write text to path atomically; return True if the file changed."""
    path = Path(path)
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
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
        current = path.read_text() if path.exists() else ""
        if current != text:
            diff = "".join(difflib.unified_diff(current.splitlines(True), text.splitlines(True),
                                                f"{path} (on disk)", f"{path} (generator now)"))
            problems.append((path, diff or f"{path} is missing\n"))
    for path in sorted(Path(directory).glob("*.py")):
        if path not in expected and path.name != "__init__.py":
            problems.append((path, f"{path} was not written by the generator (remove it)\n"))
    return problems
