"""The committed excerpts in tests/data/fixtures are what make_fixture_excerpts.py builds from the
full files in ../shared/fixtures, byte for byte (skips without ../shared)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "fixtures"
NOT_DATA = {"README.md", "make_fixture_excerpts.py", ".gitattributes"}


def _builder():
    path = FIXTURES / "make_fixture_excerpts.py"
    spec = importlib.util.spec_from_file_location("make_fixture_excerpts", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _files(folder: Path) -> set[Path]:
    return {
        path.relative_to(folder)
        for path in folder.rglob("*")
        if path.is_file() and path.name not in NOT_DATA and "__pycache__" not in path.parts
    }


def test_committed_excerpts_are_rebuilt_exactly(full_fixtures_dir, tmp_path, capsys):
    _builder().build(full_fixtures_dir, tmp_path)
    made = _files(tmp_path)
    assert made == _files(FIXTURES)
    for name in sorted(made):
        assert (tmp_path / name).read_bytes() == (FIXTURES / name).read_bytes(), name
    assert "5 records, 225 ctxs" in capsys.readouterr().out
