"""The layering of n2n_fast, checked by reading every import statement of every module, the lazy ones inside
functions included (ast.walk), so a rule cannot be bypassed by importing late (docs/design.md §3). The rules are
stated per folder, so a new file in a folder is covered without editing this test:

- conventions (the shared facts) and padding are leaves: they import nothing from n2n_fast;
- the reference, the oracle, stands alone: reference/ imports only reference/ and the leaves;
- kernels know nothing of the product: triton/ and ops/ import only their own package, the leaves (and ops/ the
  compiled extension);
- the product uses public ops: training/, inference/ and interop/ (the loop, tiled inference, models that travel)
  never touch the dispatch, the extension loader, the reference, Triton or ops/ directly; the op concepts
  (noise.py, loss.py, tiling.py, ...) are the only way in;
- no import cycles between modules.
"""
import ast
import pathlib
import shutil

import pytest

import n2n_fast

PACKAGE = pathlib.Path(n2n_fast.__file__).parent
LEAVES = {"conventions", "padding"}
PRODUCT_FOLDERS = {"training", "inference", "interop"}  # use public ops only
KERNEL_SIDE = {"_backend", "_ext", "_C", "reference", "triton", "ops"}


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
            elif group in PRODUCT_FOLDERS and target_group in KERNEL_SIDE:
                broken.append(f"the product uses public ops: {module} imports {target}")
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


PLANTED = {  # a new file in a folder, its lazy import, and the rule that must name it
    "training/planted.py": ("def f():\n    from .. import _backend\n", "the product uses public ops: training.planted"),
    "inference/planted.py": ("from ..triton import loss\n", "the product uses public ops: inference.planted"),
    "interop/planted.py": ("from ..reference import tiling\n", "the product uses public ops: interop.planted"),
    "reference/planted.py": ("def f():\n    from ..training import train\n",
                             "the reference must stand alone: reference.planted"),
    "triton/planted.py": ("from .. import noise\n", "kernels know nothing of the product: triton.planted"),
    "planted_leaf.py": ("", None),  # a new top-level module: no rule broken
}


@pytest.mark.parametrize("where", sorted(PLANTED))
def test_the_rules_catch_a_planted_import(monkeypatch, tmp_path, where):
    """The checker itself, on a copy of the real package with one file planted: a file new to a folder is held to
    that folder's rule, lazy imports included."""
    fake = tmp_path / "n2n_fast"
    shutil.copytree(PACKAGE, fake, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    source, expected = PLANTED[where]
    (fake / where).write_text(source)
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    if expected is None:
        test_layering_rules()
        return
    with pytest.raises(AssertionError, match=expected):
        test_layering_rules()
