"""The house plan, checked on the source (AST, nothing imported): no import cycle, and no stage
imports a stage above it.

Stages, lowest first (README "How it is built"):

* base: ``errors``, ``_tf`` (the lazy TensorFlow), ``_io``, ``_version``, ``isolation``
* ``model/``: the reader and the frozen IR; never imports ``_tf``
* ``ops/``: the rebuilders and their ``context``
* ``rebuild`` (the graph builder) and ``coverage/`` (inspect's report, targets)
* ``conversion/`` and ``quantization/`` (quantize may use conversion's verifier, never the reverse)
* ``cli/`` and the package's ``__init__`` (the public API)

Every import counts, also those inside functions: a function-local import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "tflite_inverter"

#: stage of each top-level part of the package; a module may import its own stage or lower ones
STAGES = {
    "errors": 0, "_tf": 0, "_io": 0, "_version": 0, "isolation": 0,
    "model": 1, "ops": 2, "rebuild": 3, "coverage": 3,
    "conversion": 4, "quantization": 4,
    "cli": 5, "__main__": 5, "": 5,
}
#: pairs of the same stage that may not depend on each other in this direction (importer, imported)
FORBIDDEN_SAME_STAGE = {("conversion", "quantization"), ("coverage", "rebuild"), ("rebuild", "coverage")}


def _modules() -> dict[str, Path]:
    mods = {}
    for f in PKG.rglob("*.py"):
        parts = f.relative_to(PKG).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = f
    return mods


MODULES = _modules()


def _imports(name: str) -> set[str]:
    """The package modules ``name`` imports (anywhere in the file), as names relative to the package."""
    path = MODULES[name]
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("tflite_inverter."):
                    found.add(a.name[len("tflite_inverter."):])
            continue
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = package[:len(package) - node.level + 1]
            module = ".".join(base + ([node.module] if node.module else []))
        elif node.module == "tflite_inverter" or (node.module or "").startswith("tflite_inverter."):
            module = node.module[len("tflite_inverter."):] if "." in node.module else ""
        else:
            continue
        for a in node.names:
            sub = f"{module}.{a.name}" if module else a.name
            found.add(sub if sub in MODULES else module)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {m: _imports(m) for m in MODULES}


def _top(name: str) -> str:
    return name.split(".")[0]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_checker_sees_imports():
    """The graph is not empty by accident: known edges are found (relative, function-local, absolute)."""
    assert "model.ir" in GRAPH["ops.registry"]
    assert "ops.context" in GRAPH["rebuild"]
    assert "conversion.rules" in GRAPH["conversion.pipeline"]
    assert "rebuild" in GRAPH["conversion.pipeline"]  # imported inside a function


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle():
    assert _cycles(GRAPH) == []


def test_every_part_of_the_package_has_a_stage():
    assert {_top(m) for m in MODULES} <= set(STAGES), "a new top-level module needs a stage in STAGES"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_import_from_a_higher_stage(name):
    mine = _top(name)
    wrong = sorted(m for m in GRAPH[name]
                   if STAGES[_top(m)] > STAGES[mine] or (mine, _top(m)) in FORBIDDEN_SAME_STAGE)
    assert wrong == [], f"{name} (stage {STAGES[mine]}) imports {wrong}"


def test_the_model_stage_never_imports_tensorflow():
    for name in MODULES:
        if _top(name) == "model":
            assert "_tf" not in GRAPH[name], name
            assert "tensorflow" not in MODULES[name].read_text().replace("TensorFlow", ""), name


def test_ops_import_neither_the_builder_nor_later_stages():
    for name in MODULES:
        if _top(name) == "ops":
            assert not {_top(m) for m in GRAPH[name]} & {"rebuild", "conversion", "quantization", "coverage", "cli"}, \
                (name, GRAPH[name])


def _body_lines(fn: ast.FunctionDef) -> int:
    """Lines of a function's body without its docstring."""
    body = fn.body[1:] if isinstance(fn.body[0], ast.Expr) and isinstance(fn.body[0].value, ast.Constant) else fn.body
    return body[-1].end_lineno - body[0].lineno + 1


def test_the_quantize_pipeline_reads_as_a_list_of_stages():
    """quantize() is a short list of stage calls (like ai-edge-quantizer's Quantizer.quantize), the
    child's part too, and no stage of the pipeline module grows into a second pipeline."""
    tree = ast.parse((PKG / "quantization" / "pipeline.py").read_text())
    fns = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert _body_lines(fns["quantize"]) <= 12
    assert _body_lines(fns["_quantize_work"]) <= 40
    long = {name: _body_lines(fn) for name, fn in fns.items() if _body_lines(fn) > 50}
    assert long == {}, f"stages over 50 lines: {long}"
