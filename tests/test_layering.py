"""The layering of n2n_fast, checked by reading every import statement of every module, the lazy ones inside
functions included (ast.walk), so a rule cannot be bypassed by importing late (docs/design.md §3):

- conventions (the shared facts) and padding are leaves: they import nothing from n2n_fast;
- the reference, the oracle, stands alone: reference/ imports only reference/ and the leaves;
- kernels know nothing of the product: triton/ and ops/ import only their own package, the leaves (and ops/ the
  compiled extension);
- the loop and the data path use public ops: train.py and data.py never touch the dispatch, the reference,
  Triton or ops/ directly;
- no import cycles between modules.
"""
import ast
import pathlib

import n2n_fast

PACKAGE = pathlib.Path(n2n_fast.__file__).parent
LEAVES = {"conventions", "padding"}


def _module_name(path):
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports():
    """{module: {imported n2n_fast module, ...}} with names relative to the package ('' is the package)."""
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    compiled = {"_C"}  # the extension: a module without Python source
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".") if package else []
                    base = base[:len(base) - (node.level - 1)]
                    stem = ".".join(base + ([node.module] if node.module else []))
                elif node.module and node.module.split(".")[0] == "n2n_fast":
                    stem = node.module.partition(".")[2]
                else:
                    continue
                # `from .x import y` imports module x.y when it is one, else a name of x
                targets = [f"{stem}.{a.name}".strip(".") for a in node.names]
                found |= {t if t in modules or t in compiled else stem for t in targets}
            elif isinstance(node, ast.Import):
                found |= {a.name.partition(".")[2] for a in node.names if a.name.split(".")[0] == "n2n_fast"}
        graph[name] = {m for m in found if m != name}
    return graph


def _group(module):
    return module.split(".")[0]


def test_layering_rules():
    graph = _imports()
    broken = []
    for module, imported in graph.items():
        for target in imported:
            group, target_group = _group(module), _group(target)
            if module in LEAVES:
                broken.append(f"{module} is a leaf but imports {target}")
            elif group == "reference" and target_group not in {"reference"} | LEAVES:
                broken.append(f"the reference must stand alone: {module} imports {target}")
            elif group in ("triton", "ops") and target_group not in {group, "_C"} | LEAVES:
                broken.append(f"kernels know nothing of the product: {module} imports {target}")
            elif module in ("train", "data") and target_group in ("_backend", "reference", "triton", "ops"):
                broken.append(f"the loop uses public ops: {module} imports {target}")
    assert not broken, "\n".join(sorted(broken))


def test_no_import_cycles():
    graph = _imports()
    cycles = []

    def visit(module, path):
        for target in sorted(graph.get(module, ())):
            if target == path[0]:
                cycles.append(" -> ".join(path + [target]))
            elif target not in path and target > path[0]:  # report each cycle once, from its smallest module
                visit(target, path + [target])

    for start in sorted(graph):
        visit(start, [start])
    assert not cycles, "\n".join(cycles)


def test_the_rules_catch_a_violation(monkeypatch, tmp_path):
    """The checker itself: a reference module importing the dispatch lazily, inside a function, is caught."""
    fake = tmp_path / "n2n_fast"
    (fake / "reference").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "_backend.py").write_text("")
    (fake / "reference" / "__init__.py").write_text("")
    (fake / "reference" / "bad.py").write_text("def f():\n    from .. import _backend\n    return _backend\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    graph = _imports()
    assert graph["reference.bad"] == {"_backend"}
    try:
        test_layering_rules()
    except AssertionError as error:
        assert "the reference must stand alone: reference.bad imports _backend" in str(error)
    else:
        raise AssertionError("a lazy import of the dispatch from the reference went unnoticed")
