"""The package's import graph, read with `ast`: no module imports a private name (`_x`) of another, and no import
cycle, counting imports deferred inside functions (a deferred import only hides a cycle until something calls it)."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]/'recsys_lib'


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def imports(path: Path, modules: set) -> list:
    "(module imported, name imported or None) for every recsys_lib import in the file, at any depth."
    name = module_name(path)
    package = name if path.name == '__init__.py' else name.rsplit('.', 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split('.')[:len(package.split('.')) - node.level + 1] if node.level else []
            target = '.'.join(base + ([node.module] if node.module else [])) if node.level else node.module or ''
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found += [(sub, None)] if sub in modules else [(target, alias.name)]
        elif isinstance(node, ast.Import): found += [(alias.name, None) for alias in node.names]
    return [(m, n) for m, n in found if m.split('.')[0] == 'recsys_lib']


def graph() -> tuple:
    files = [p for p in PACKAGE.rglob('*.py') if p.name != '_modidx.py']
    modules = {module_name(p) for p in files}
    return modules, {module_name(p): imports(p, modules) for p in files}


def cycles(edges: dict) -> list:
    "Every back edge of a depth-first walk, as the cycle it closes."
    state, stack, found = {}, [], []
    def visit(u):
        state[u] = 'open'; stack.append(u)
        for v in sorted(edges.get(u, ())):
            if state.get(v) == 'open': found.append(stack[stack.index(v):] + [v])
            elif v not in state: visit(v)
        stack.pop(); state[u] = 'done'
    for m in sorted(edges):
        if m not in state: visit(m)
    return found


def test_the_checks_see_what_they_look_for():
    edges = {'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}
    assert cycles(edges) == [['a', 'b', 'c', 'a']]
    assert cycles({'a': {'b'}, 'b': set()}) == []
    modules, found = graph()
    assert 'recsys_lib.core' in modules and ('recsys_lib.core', 'DataError') in found['recsys_lib.data']


def test_no_private_name_is_imported_across_modules():
    _, found = graph()
    private = sorted(f"{m} imports {n} from {target}" for m, names in found.items() for target, n in names
                     if n and n.startswith('_') and not n.startswith('__') and target != m)
    assert not private, '\n'.join(private)


def test_no_import_cycle():
    modules, found = graph()
    edges = {m: {t for t, _ in names if t in modules and t != m} for m, names in found.items()}
    assert not cycles(edges), '\n'.join(' -> '.join(c) for c in cycles(edges))
