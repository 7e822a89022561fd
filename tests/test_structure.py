"""The package's structure: every module imports, and no two modules of ``atebm`` import each other.

The import graph is read with ``ast`` from the package's files: an edge ``a -> b`` for every import of ``b``
written in ``a``, at module level or deferred inside a function (a deferred import that closes a cycle is still a
cycle: it only hides it from the import order), but not under ``if TYPE_CHECKING:`` (annotations only). ``from .
import name`` points at the submodule when ``name`` is one, else at the package. Importing a submodule does not
count as importing its parent package. A cycle is refused: move the piece both sides need to a module they both
import (as :func:`atebm.data.core.stratified_split`, once in ``data/embedded.py`` and imported back by
``data/fashion.py``)."""
from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from pathlib import Path

import atebm

PACKAGE_DIR = Path(atebm.__file__).resolve().parent


def module_names(root: Path = PACKAGE_DIR) -> dict[str, Path]:
    """``{"atebm.data.core": path, ...}`` for every ``.py`` file under ``root`` (``__init__`` names its package)."""
    names: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = (root.name,) + path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement under ``node``, skipping the bodies of ``if TYPE_CHECKING:``."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
        return
    if isinstance(node, ast.If) and _is_type_checking(node.test):
        for child in node.orelse:
            yield from _imports(child)
        return
    for child in ast.iter_child_nodes(node):
        yield from _imports(child)


def import_graph(root: Path = PACKAGE_DIR) -> dict[str, set[str]]:
    """``{module: {modules of the package it imports}}`` (see the module docstring)."""
    modules = module_names(root)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            for target in targets:
                while target and target not in modules:  # a name inside a module -> that module
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_every_module_of_the_package_imports():
    failed = {}
    for name in module_names():
        if name.endswith("__main__"):
            continue  # importing one runs the command line (test_docs_commands runs both)
        try:
            importlib.import_module(name)
        except Exception as err:  # every failure is reported, one line each
            failed[name] = f"{type(err).__name__}: {err}"
    assert not failed, failed


def test_the_import_graph_is_read_correctly():
    """The scanner sees what the cycle test relies on: relative, package-level and deferred imports."""
    graph = import_graph()
    assert "atebm.data.core" in graph["atebm.data.embedded"]          # from .core import ...
    assert "atebm.data.fashion" in graph["atebm.data.embedded"]       # from .fashion import ...
    assert "atebm.data.embedded" in graph["atebm.data"]               # the package imports its modules
    assert "atebm.cli" in graph["atebm.__main__"]                     # from .cli import main
    assert "atebm.cli.options" in graph["atebm.cli.dsgan"]            # from . import options
    assert "atebm.dsgan" in graph["atebm.cli.dsgan"]                  # from ..dsgan import ... inside functions
    assert "atebm" in graph["atebm.cli"]                              # from .. import __version__
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles_among_atebm_modules():
    cycles = find_cycles(import_graph())
    assert not cycles, ("import cycles; move the piece both sides need to a module they both import: "
                        + "; ".join(" <-> ".join(c) for c in cycles))


def test_every_objective_outside_the_trainer_says_where_its_runs_are_resumed():
    """A run folder given to the wrong resume names the right command (``OBJECTIVE_HOMES``): each Objective
    subclass of the package is defined in the trainer's module or listed there, with its module and, where it has
    one, the Trainer subclass whose resume() continues its runs."""
    from atebm.training import trainer as trainer_module
    from atebm.training.trainer import OBJECTIVE_HOMES, Objective

    for name in module_names():
        if not name.endswith("__main__"):
            importlib.import_module(name)
    subclasses, frontier = [], [Objective]
    while frontier:
        frontier.extend(sub := frontier.pop().__subclasses__())
        subclasses.extend(sub)
    outside = {cls.kind: cls for cls in subclasses
               if cls.__module__.startswith("atebm.") and cls.__module__ != trainer_module.__name__}
    assert outside, "no objective outside the trainer found: the scan is broken"
    assert sorted(outside) == sorted(OBJECTIVE_HOMES)
    for kind, cls in outside.items():
        home = OBJECTIVE_HOMES[kind]
        assert home.module == cls.__module__, f"{kind}: defined in {cls.__module__}, listed in {home.module}"
        if home.trainer is not None:
            resumer = atebm
            for part in home.trainer.split("."):
                resumer = getattr(resumer, part)
            assert isinstance(resumer, type) and issubclass(resumer, trainer_module.Trainer)
            assert resumer.resume.__func__ is not trainer_module.Trainer.resume.__func__, \
                f"{home.trainer} continues its runs with Trainer.resume(), which refuses them"
