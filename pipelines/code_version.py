"""The code a stage runs, as content hashes: its module and every first-party module it
imports (transitively, including imports inside functions), found by reading their source.

A stage's fingerprint includes these, so editing the code it runs makes its outputs stale,
while editing, say, the report leaves the training stages cached.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
from pathlib import Path

FIRST_PARTY = ("retrieval", "pipelines")
REPO = Path(__file__).resolve().parents[1]


def _source_file(module: str) -> Path | None:
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if found is None or not found.origin or not found.origin.endswith(".py"):
        return None
    return Path(found.origin)


def _imported_names(path: Path, module: str) -> set[str]:
    """First-party modules (and names that may be submodules) that ``path`` imports."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}".rstrip(".")
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return {n for n in names if n.split(".")[0] in FIRST_PARTY}


def _with_parents(module: str) -> list[str]:
    """Importing ``a.b.c`` runs ``a`` and ``a.b`` first."""
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


@functools.cache
def code_hashes(module: str) -> dict[str, str]:
    """``{repo-relative file: sha256[:16]}`` of ``module`` and everything it imports."""
    seen: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        for candidate in _with_parents(name):
            if candidate in seen:
                continue
            path = _source_file(candidate)
            if path is None:
                continue
            seen[candidate] = path
            todo.extend(_imported_names(path, candidate))
    return {
        _relative(path): hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        for path in sorted(set(seen.values()))
    }


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)
