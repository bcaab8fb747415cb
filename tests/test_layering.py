"""The tree states the architecture: imports only go down the layers, one import style, small modules.

Layers (a package may import itself and those listed):

- ``models/``: the method; numpy, torch, xarray, scikit-image only, never an edge
- ``state/``: persistence; ``models``
- ``formats/``: file readers and writers; ``models``
- ``plots/``: figures; ``models``, ``formats``
- ``stream/``: the streaming service; ``models``, ``state`` (never a command-line module)
- ``ingest/``: the LiCSAR ingest; ``models``, ``state``, ``formats``, ``stream``
- ``cli/``: one thin module per command; anything
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "state", "formats", "plots", "stream", "ingest", "cli")
ALLOWED = {
    "models": {"models"},
    "state": {"models", "state"},
    "formats": {"models", "formats"},
    "plots": {"models", "formats", "plots"},
    "stream": {"models", "state", "stream"},
    "ingest": {"models", "state", "formats", "stream", "ingest"},
    "cli": set(PACKAGES),
}
#: Third-party edges the method never touches (STYLE.md: models/ is pure array code).
MODELS_FORBIDDEN = ("kafka", "faust", "redis", "prometheus_client", "aiokafka", "h5py", "matplotlib", "rasterio", "rioxarray")
#: What marks a command-line, reader or plotting module: none of these belong in stream/.
STREAM_FORBIDDEN = ("argparse", "matplotlib", "rasterio", "rioxarray", "h5py")
MAX_LINES = 400
#: Modules allowed over MAX_LINES, each with its reason. Empty: every module fits.
LONG_MODULES: dict[str, str] = {}


def imports(path: Path) -> list[tuple[int, str]]:
    """(level, module) of every import in a file; level > 0 is a relative import."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(0, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append((node.level, node.module or ""))
    return out


def violations(package: str, path: Path) -> list[str]:
    """Every layering rule ``path`` (a module of ``package``) breaks, as readable lines."""
    bad = []
    for level, mod in imports(path):
        if level:
            bad.append(f"{path.name}: relative import '{'.' * level}{mod}' (import absolutely: 'from ladsdin.<package> ...')")
            continue
        parts = mod.split(".")
        if parts[0] == "ladsdin" and len(parts) > 1 and parts[1] in PACKAGES and parts[1] not in ALLOWED[package]:
            bad.append(f"{path.name}: {package}/ imports {mod}")
        if package == "models" and mod.startswith(MODELS_FORBIDDEN):
            bad.append(f"{path.name}: models/ imports the edge {mod}")
        if package == "stream" and parts[0] in STREAM_FORBIDDEN:
            bad.append(f"{path.name}: stream/ imports {mod} (a command-line, reader or plotting module belongs in cli/, formats/ or plots/)")
    return bad


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_every_package_has_modules():
    for package in PACKAGES:
        assert modules(package), f"{package}/ has no module"


def test_imports_only_go_down_the_layers():
    bad = [v for package in PACKAGES for path in modules(package) for v in violations(package, path)]
    assert not bad, "layering violations:\n" + "\n".join(bad)


def test_stream_holds_only_the_streaming_service():
    for path in modules("stream"):
        text = path.read_text()
        assert "def add_parser(" not in text and not path.stem.endswith("_cmd"), f"stream/{path.name} is a command module"
        assert "def read_cube" not in text and "def open_cube" not in text, f"stream/{path.name} reads cube files"


def test_no_module_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for package in PACKAGES for p in modules(package)
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    unexplained = {p: n for p, n in long.items() if p not in LONG_MODULES}
    assert not unexplained, f"modules over {MAX_LINES} lines (split them, or list them with a reason): {unexplained}"


def test_the_checker_catches_each_kind_of_violation(tmp_path):
    p = tmp_path / "x.py"
    p.write_text("from ..stream import cli\nimport redis\nfrom ladsdin.cli import main\nfrom ladsdin.stream.worker import run_worker\n"
                 "import argparse\n")
    assert violations("models", p) == [
        "x.py: relative import '..stream' (import absolutely: 'from ladsdin.<package> ...')",
        "x.py: models/ imports the edge redis",
        "x.py: models/ imports ladsdin.cli",
        "x.py: models/ imports ladsdin.stream.worker",
    ]
    assert violations("state", p)[1:] == ["x.py: state/ imports ladsdin.cli", "x.py: state/ imports ladsdin.stream.worker"]
    assert violations("stream", p)[1:] == [
        "x.py: stream/ imports ladsdin.cli",
        "x.py: stream/ imports argparse (a command-line, reader or plotting module belongs in cli/, formats/ or plots/)",
    ]
    assert len(violations("cli", p)) == 1  # only the relative import: cli/ may import anything
