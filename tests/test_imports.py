"""Imports go one way: a stage imports only itself and earlier stages, evaluation and command code imports the core and
never the reverse, and there is no import cycle. Read from the source (every import statement, also inside functions
and under ``if TYPE_CHECKING``), so a lazy import cannot hide a cycle."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gpt2chat"
# The order data flows in, in training (a passage is retrieved for every training example) and in chat (a message is
# masked and checked, then retrieved for, then answered).
STAGES = ("corpus", "guard", "search", "modeling", "chat", "serving", "reports")
# Modules at the package top that every stage may use; they import no stage.
LEAVES = ("gpt2chat.settings", "gpt2chat.errors", "gpt2chat.markdown")
# Command code: the registry and the package's entry points import the stages, never the reverse.
COMMAND_CODE = ("gpt2chat", "gpt2chat.__main__", "gpt2chat.cli")


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_imports(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Each gpt2chat module -> the gpt2chat modules it imports (``from a import b`` counts as a.b when a.b is one)."""
    modules = {module_name(path, package): path for path in package.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.update(f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules
                                else node.module for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                raise AssertionError(f"{name}: relative import (the package uses absolute imports)")
        graph[name] = {m for m in imported if m in modules and m != name}
    return graph


def stage(module: str) -> int | None:
    parts = module.split(".")
    return STAGES.index(parts[1]) if len(parts) > 2 and parts[1] in STAGES else None


def is_evaluation(module: str) -> bool:
    """Code that measures the core (and holds the command that runs the measurement)."""
    return stage(module) == STAGES.index("reports") or module.endswith("_eval") or module.endswith(".export_check")


def wrong_way(graph: dict[str, set[str]]) -> list[str]:
    problems = []
    for module, imported in sorted(graph.items()):
        for target in sorted(imported):
            if module in COMMAND_CODE:
                continue
            if target in COMMAND_CODE:
                problems.append(f"{module} -> {target}: the core never imports command code")
            elif module in LEAVES:
                problems.append(f"{module} -> {target}: a top-level leaf imports no stage")
            elif target in LEAVES:
                continue
            elif stage(module) is None or stage(target) is None:
                problems.append(f"{module} -> {target}: neither a stage module nor a leaf")
            elif stage(target) > stage(module):
                problems.append(f"{module} -> {target}: against the flow {' -> '.join(STAGES)}")
            elif is_evaluation(target) and not is_evaluation(module):
                problems.append(f"{module} -> {target}: the core imports an evaluation")
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(module):
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in graph.get(module, ()):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_every_module_is_seen():
    graph = package_imports()
    assert {"gpt2chat.corpus.data", "gpt2chat.chat.engine", "gpt2chat.cli", "gpt2chat.settings"} <= set(graph)
    assert "gpt2chat.search.retrieval" in graph["gpt2chat.chat.followups"]  # an import inside a function counts


def test_no_import_cycle():
    assert cycles(package_imports()) == []


def test_imports_follow_the_flow():
    assert wrong_way(package_imports()) == []


def test_the_checks_catch_a_backward_import_and_a_cycle(tmp_path):
    """A copy of the package with one backward import added (the loader asking the retrieval index, which reads the
    loader's records) fails both checks."""
    import shutil

    copy = tmp_path / "gpt2chat"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    loader = copy / "corpus" / "data.py"
    loader.write_text(loader.read_text(encoding="utf-8") + "\n\ndef _table():\n"
                      "    from gpt2chat.search.retrieval import RetrievalIndex\n", encoding="utf-8")
    graph = package_imports(copy)
    assert wrong_way(graph) == ["gpt2chat.corpus.data -> gpt2chat.search.retrieval: against the flow "
                                "corpus -> guard -> search -> modeling -> chat -> serving -> reports"]
    assert any({"gpt2chat.corpus.data", "gpt2chat.search.retrieval"} <= set(group) for group in cycles(graph))


@pytest.mark.parametrize("line, problem", [
    ("from gpt2chat.guard.masking_eval import run_eval", "the core imports an evaluation"),
    ("from gpt2chat.cli import run", "the core never imports command code"),
])
def test_the_checks_catch_core_importing_evaluation_or_commands(tmp_path, line, problem):
    import shutil

    copy = tmp_path / "gpt2chat"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    safety = copy / "guard" / "safety.py"
    safety.write_text(safety.read_text(encoding="utf-8") + f"\n\ndef _x():\n    {line}\n", encoding="utf-8")
    assert [p for p in wrong_way(package_imports(copy)) if p.startswith("gpt2chat.guard.safety ->")] == [
        f"gpt2chat.guard.safety -> {line.split()[1]}: {problem}"]
