"""The method (models/) never imports the edges: no kafka, faust, redis, prometheus, stream or state."""
from __future__ import annotations

import ast
from pathlib import Path

FORBIDDEN = ("kafka", "faust", "redis", "prometheus_client", "aiokafka", "ladsdin.stream", "ladsdin.state", "h5py", "matplotlib")
MODELS = Path(__file__).resolve().parents[2] / "models"


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level >= 2 or mod.startswith(("stream", "state")) and node.level:
                names.append(f"ladsdin.{mod}" if node.level >= 2 else mod)
            else:
                names.append(mod)
    return names


def test_models_never_import_the_edges():
    files = sorted(MODELS.rglob("*.py"))
    assert len(files) > 8
    bad = [(f.name, n) for f in files for n in _imports(f) if n.startswith(FORBIDDEN) or n == ".." ]
    assert not bad, f"models/ must stay pure (numpy, torch, xarray, scikit-image): {bad}"


def test_the_checker_catches_a_wrong_way_import(tmp_path):
    p = tmp_path / "x.py"
    p.write_text("from ..stream import cli\nimport redis\n")
    assert [n for n in _imports(p) if n.startswith(FORBIDDEN)] == ["ladsdin.stream", "redis"]
