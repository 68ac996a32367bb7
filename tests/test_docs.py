"""Docs that stay true: README.md is `nbs/index.ipynb` rendered, every exported symbol has a docstring, and the
README's commands parse (and the cheap ones run).

`python tests/test_docs.py` (what `make readme` runs) rewrites README.md from the notebook."""
import importlib, inspect, pkgutil, posixpath, re, shlex, subprocess

import nbformat
import pytest
from nbconvert import MarkdownExporter

import recsys_lib
from conftest import BIN, ROOT

# a relative link of the notebook (relative to nbs/), not a URL, an anchor or an absolute path
_LINK = re.compile(r'\]\((?![a-z]+:|#|/)([^)\s]+)\)')


def render_readme() -> str:
    "README.md as nbconvert renders nbs/index.ipynb, its relative links made relative to the repository root."
    nb = nbformat.read(ROOT/'nbs'/'index.ipynb', as_version=4)
    nb.metadata['language_info'] = {'name': 'python'}  # nbdev-clean drops it; it names the code blocks' language
    body, _ = MarkdownExporter().from_notebook_node(nb)
    body = _LINK.sub(lambda m: f"]({posixpath.normpath('nbs/' + m.group(1))})", body)
    return re.sub(r'\n{3,}', '\n\n', body).strip() + '\n'


def test_readme_is_the_rendered_index():
    assert (ROOT/'README.md').read_text() == render_readme(), "README.md differs from nbs/index.ipynb: run `make readme`"


def test_readme_links_resolve():
    for link in _LINK.findall((ROOT/'README.md').read_text()):
        assert (ROOT/link.split('#')[0]).exists(), f"README links to {link}, which does not exist"


def _modules():
    for info in pkgutil.walk_packages(recsys_lib.__path__, 'recsys_lib.'):
        if not info.name.endswith('_modidx'): yield importlib.import_module(info.name)


def test_every_exported_symbol_has_a_docstring():
    missing = []
    for mod in _modules():
        for name in getattr(mod, '__all__', []):
            obj = getattr(mod, name)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)) or obj.__module__ != mod.__name__: continue
            if not inspect.getdoc(obj): missing.append(f"{mod.__name__}.{name}")
            if inspect.isclass(obj):
                missing += [f"{mod.__name__}.{name}.{m}" for m, f in vars(obj).items()
                            if not m.startswith('_') and inspect.isfunction(f) and not f.__doc__]
    assert not missing, f"exported without a docstring: {missing}"


def _notebook_source(module: str) -> str:
    "The code of the notebook that exports `module` (recsys_lib.x.y)."
    name = module.removeprefix('recsys_lib.')
    for nb in (ROOT/'nbs').glob('*.ipynb'):
        code = '\n'.join(c.source for c in nbformat.read(nb, as_version=4).cells if c.cell_type == 'code')
        if re.search(rf'^#\|\s*default_exp\s+{re.escape(name)}\s*$', code, re.M): return code
    raise AssertionError(f"no notebook exports {module}")


def test_every_public_method_has_a_show_doc():
    "nbdev documents exported functions and classes by itself; the methods of a class need `show_doc` cells."
    missing = []
    for mod in _modules():
        code = None
        for name in getattr(mod, '__all__', []):
            cls = getattr(mod, name)
            if not inspect.isclass(cls) or cls.__module__ != mod.__name__: continue
            methods = [m for m, f in vars(cls).items() if not m.startswith('_') and (inspect.isfunction(f) or isinstance(f, (classmethod, staticmethod)))]
            if methods and code is None: code = _notebook_source(mod.__name__)
            missing += [f"{name}.{m}" for m in methods if f"show_doc({name}.{m}" not in code]
    assert not missing, f"public methods without a show_doc cell in their notebook: {missing}"


def _readme_commands() -> list:
    "Every `recsys ...` command the README shows: lines of code blocks, and the first column of its tables."
    text = (ROOT/'README.md').read_text()
    found = re.findall(r'^(recsys [^\n#]+)', text, re.M)
    found += [c for line in text.splitlines() if line.startswith('| `recsys') for c in re.findall(r'`(recsys [^`]+)`', line.split('|')[1])]
    cleaned = [re.sub(r'\[[^\]]*\]', '', c).strip() for c in found]
    return list(dict.fromkeys(c for c in cleaned if c))


def test_readme_commands_parse():
    from recsys_lib.cli import build_parser
    commands = _readme_commands()
    assert len(commands) >= 10
    for command in commands:
        args = shlex.split(command)[1:]
        try: build_parser().parse_args(args)
        except SystemExit: pytest.fail(f"the README shows `{command}`, which recsys refuses")
        for a in args:
            if a.endswith('.ipynb'): assert (ROOT/a).is_file(), f"`{command}` names {a}, which does not exist"


_CHEAP = ('recsys inspect', 'recsys runs', 'recsys compare')


@pytest.mark.parametrize('command', [c for c in _readme_commands() if c.startswith(_CHEAP) or '--dry-run' in c])
def test_readme_command_runs(command, clean_env):
    args = shlex.split(command)
    if args[1] == 'compare': args += ['--preset', 'tiny']
    r = subprocess.run([str(BIN/'recsys'), *args[1:]], cwd=ROOT, env=clean_env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"`{command}` failed:\n{r.stderr[-2000:]}"
    assert r.stdout.strip()


if __name__ == '__main__':
    (ROOT/'README.md').write_text(render_readme())
    print("README.md written from nbs/index.ipynb")
