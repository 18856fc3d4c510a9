"""The package's layers: no import cycle, no upward import, and a light ``import lang_sam``.

Every ``import`` / ``from ... import`` statement of lang_sam/**/*.py is read with ``ast``, those
inside functions included (a lazy import is still a dependency). A module may import from its own
layer or a lower one only.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "lang_sam"

#: Lowest first. Names are relative to ``lang_sam``; ``hub.*`` is every module of lang_sam/hub/.
LAYERS: list[set[str]] = [
    {"settings", "errors", "patches", "validation", "cache", "precision", "reprs"},
    {"masks", "tiling", "interop", "results", "tracking", "video_io", "raster"},  # results as crops, the tile grid and merge,
    # results as other libraries' types (supervision, imported lazily), the result types: no models
    {"hub.*"},
    {"models.*"},
    {"lang_sam", "engines", "pipeline", "generate", "utils", "testing", "video", "geo"},  # "lang_sam" is lang_sam/lang_sam.py, the facade;
    # pipeline: detect -> select -> segment, which the facade, labelling and serving all run
    {"labeling.*"},  # labeling.distributed: the pipeline on Ray Data (the [ray] extra)
    {"evaluate"},  # scores against the user's ground truth, and lang-sam compare (runs labeling per setting)
    {"serving.*"},
    {"cli", "cli_report", "cli_eval", "cli_geo", "__main__"},  # cli_report: what the command prints (cli imports it)
]
#: Package __init__ files take the layer of the highest module they import and are not checked
#: themselves. No other module may only re-export (test_no_module_only_reexports).
COMPAT_ALIASES: set[str] = set()
#: What ``import lang_sam`` must never import: optional extras and the heavy model libraries.
NOT_AT_IMPORT = ("ray", "gradio", "fastapi", "uvicorn", "supervision", "groundingdino", "segment_anything", "av",
                 "rasterio", "shapely", "pyproj", "pyogrio", "geopandas")


def module_names() -> dict[str, Path]:
    """``"hub.spec"`` -> its file; a package's __init__ is named after the package
    (``"hub"``; the top package is ``""``)."""
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(PKG).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = module_names()
PACKAGES = {name for name, path in MODULES.items() if path.name == "__init__.py"}


def _resolve(importer: str, node: ast.AST) -> list[str]:
    """The lang_sam modules an import statement of ``importer`` names (relative to lang_sam)."""
    def inside(dotted: str) -> str | None:
        if dotted == "lang_sam":
            return ""
        return dotted[len("lang_sam."):] if dotted.startswith("lang_sam.") else None

    targets: list[str | None] = []
    if isinstance(node, ast.Import):
        targets = [inside(alias.name) for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
        if node.level:  # relative: from the importer's package
            package = importer.split(".") if importer in PACKAGES else importer.split(".")[:-1]
            package = [p for p in package if p]
            base_parts = package[: len(package) - (node.level - 1)]
            base = ".".join(base_parts + ([node.module] if node.module else []))
        else:
            base = inside(node.module or "")
        if base is not None:
            for alias in node.names:
                sub = f"{base}.{alias.name}" if base else alias.name
                targets.append(sub if sub in MODULES else base)  # a submodule, or a name in base
    return [t for t in dict.fromkeys(targets) if t is not None and t in MODULES and t != importer]


def import_graph() -> dict[str, set[str]]:
    """Module -> the lang_sam modules it imports anywhere in its file (functions included)."""
    graph = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[name] = {t for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                       for t in _resolve(name, node)}
    return graph


GRAPH = import_graph()


def dotted(name: str) -> str:
    return f"lang_sam.{name}" if name else "lang_sam"


def declared_layer(name: str) -> int | None:
    for i, layer in enumerate(LAYERS):
        for entry in layer:
            if entry == name or (entry.endswith(".*") and name.startswith(entry[:-1])):
                return i
    return None


def is_exempt(name: str) -> bool:
    return name in PACKAGES or name in COMPAT_ALIASES


def layer_of(name: str, seen: frozenset = frozenset()) -> int:
    """A checked module's declared layer; a re-exporting module's is the highest it imports."""
    if not is_exempt(name):
        layer = declared_layer(name)
        assert layer is not None, f"{dotted(name)} is in no layer: add it to LAYERS in {__file__}"
        return layer
    deps = [d for d in GRAPH[name] if d not in seen]
    return max((layer_of(d, seen | {name}) for d in deps), default=0)


def test_every_module_is_in_a_layer_or_exempt():
    unplaced = [n for n in MODULES if not is_exempt(n) and declared_layer(n) is None]
    assert not unplaced, f"modules in no layer: {unplaced}"
    stale = [a for a in COMPAT_ALIASES if a not in MODULES]
    assert not stale, f"aliases listed that do not exist: {stale}"


def test_no_upward_import():
    """Each module imports only from its own layer or lower (settings/errors/patches/validation/
    cache/precision < hub < models < lang_sam.py, utils, testing < labeling < serving < cli)."""
    bad = []
    for name, deps in GRAPH.items():
        if is_exempt(name):
            continue
        mine = layer_of(name)
        for dep in sorted(deps):
            if layer_of(dep) > mine:
                bad.append(f"{dotted(name)} (layer {mine}) imports {dotted(dep)} (layer {layer_of(dep)})")
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_no_import_cycle():
    """No module reaches itself through the imports of its file (lazy ones included)."""
    cycles = []
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(GRAPH[node]):
            if state.get(dep) == 1:
                cycles.append(" -> ".join(dotted(m) for m in stack[stack.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checks_have_teeth():
    """The resolver sees relative, aliased, star and in-function imports."""
    def deps(importer: str, code: str) -> set[str]:
        return {t for node in ast.walk(ast.parse(code)) if isinstance(node, (ast.Import, ast.ImportFrom))
                for t in _resolve(importer, node)}

    assert deps("models.detector", "def f():\n    from lang_sam.cli import main") == {"cli"}
    assert deps("models.detector", "from ..hub import spec") == {"hub.spec"}
    assert deps("models.detector", "from . import segmenter") == {"models.segmenter"}
    assert deps("hub.load", "import lang_sam.labeling.run as r") == {"labeling.run"}
    assert deps("cli", "from lang_sam import LangSAM, errors") == {"", "errors"}
    assert deps("cli", "from lang_sam.errors import *") == {"errors"}
    assert layer_of("") == declared_layer("lang_sam")  # a package takes its highest import's layer
    assert layer_of("serving") == declared_layer("serving.service")


def test_every_module_imports_alone_in_a_fresh_process():
    """Each module imported first, with no other lang_sam module loaded (what an import-order
    cycle would break), and ``import lang_sam`` loads none of the optional or model libraries."""
    names = [dotted(n) for n in MODULES]
    code = f"""
import importlib, json, sys, traceback
failed = {{}}
for name in {names!r}:
    for loaded in [m for m in sys.modules if m == "lang_sam" or m.startswith("lang_sam.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except BaseException:
        failed[name] = traceback.format_exc(limit=-3)
for loaded in [m for m in list(sys.modules) if m == "lang_sam" or m.startswith("lang_sam.")]:
    del sys.modules[loaded]
""" + """
import lang_sam
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(%r))
print(json.dumps({"failed": failed, "heavy": heavy}))
""" % (NOT_AT_IMPORT,)
    script = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert script.returncode == 0, script.stderr
    result = json.loads(script.stdout.strip().splitlines()[-1])
    assert result["failed"] == {}, "\n".join(f"{k}:\n{v}" for k, v in result["failed"].items())
    assert result["heavy"] == [], f"import lang_sam imported {result['heavy']}"


def _only_reexports(path: Path) -> bool:
    """True when a module's top level is nothing but a docstring, imports, ``__all__`` and a
    ``__main__`` guard: it defines nothing of its own."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):  # docstring
            continue
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if all(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
                continue
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            continue
        return False
    return True


def test_no_module_only_reexports():
    """Issue 14: eight modules only re-exported a layout that was never released."""
    offenders = [dotted(n) for n, path in MODULES.items()
                 if n not in PACKAGES and path.name != "__main__.py" and _only_reexports(path)]
    assert offenders == []


def test_the_reexport_check_has_teeth(tmp_path):
    shim = tmp_path / "shim.py"
    shim.write_text('"""Old place."""\nfrom lang_sam.hub import *  # noqa\nfrom lang_sam.hub import __all__\n'
                    'if __name__ == "__main__":\n    main()\n')
    real = tmp_path / "real.py"
    real.write_text('from lang_sam.hub import get_spec\n\ndef f():\n    return get_spec\n')
    assert _only_reexports(shim) and not _only_reexports(real)


#: Issue 26: a module a maintainer can read whole, and a facade that only wires its engines.
MAX_MODULE_LINES = 700
MAX_FACADE_LINES = 300


def _lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_no_module_is_longer_than_a_maintainer_reads_whole():
    assert {dotted(n): _lines(p) for n, p in MODULES.items() if _lines(p) > MAX_MODULE_LINES} == {}


def test_the_facade_only_wires():
    assert _lines(PKG / "lang_sam.py") < MAX_FACADE_LINES


def test_the_size_checks_have_teeth(tmp_path):
    long = tmp_path / "long.py"
    long.write_text("x = 1\n" * (MAX_MODULE_LINES + 1))
    assert _lines(long) > MAX_MODULE_LINES
