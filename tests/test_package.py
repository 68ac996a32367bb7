"The exported package: light to import, in step with its notebooks, installable as a wheel."
import json, re, subprocess, sys, zipfile

import pytest

from conftest import ROOT

HEAVY = ('torch', 'pytorch_lightning', 'lightning', 'pyspark', 'mlflow', 'sagemaker', 'boto3', 'implicit', 'papermill')


def exported_modules():
    "Module names declared by `#| default_exp` in the notebooks."
    mods = []
    for nb in sorted((ROOT/'nbs').rglob('*.ipynb')):
        if '.ipynb_checkpoints' in nb.parts: continue
        for cell in json.loads(nb.read_text())['cells']:
            m = re.search(r'^#\|\s*default_exp\s+(\S+)', ''.join(cell['source']), re.M)
            if m: mods.append(m.group(1))
    return mods


def test_every_notebook_module_is_exported():
    mods = exported_modules()
    assert {'core', 'data', 'split', 'metrics', 'synthetic', 'models', 'cli'} <= set(mods)
    for m in mods: assert (ROOT/'recsys_lib'/(m.replace('.', '/') + '.py')).is_file(), m


def test_import_stays_light():
    "Importing the lean modules must not pull in the heavy extras."
    light = [m for m in exported_modules() if m in ('core', 'data', 'split', 'metrics', 'synthetic', 'models', 'cli', 'viz')]
    code = ("import sys, importlib; import recsys_lib; "
            + "; ".join(f"importlib.import_module('recsys_lib.{m}')" for m in light)
            + f"; print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == '[]', f"heavy modules imported: {out}"


def test_wheel_contains_package_and_console_script(tmp_path):
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', str(tmp_path), str(ROOT)],
                   check=True, capture_output=True)
    wheel = next(tmp_path.glob('recsys_lib-*.whl'))
    names = zipfile.ZipFile(wheel).namelist()
    for m in exported_modules(): assert f"recsys_lib/{m.replace('.', '/')}.py" in names
    entry = next(n for n in names if n.endswith('entry_points.txt'))
    assert 'recsys = recsys_lib.cli:main' in zipfile.ZipFile(wheel).read(entry).decode()
