"The `recsys` console script, run as a user would run it."
import json, subprocess, textwrap
from pathlib import Path

import pytest

from recsys_lib.params import new_notebook

from conftest import BIN, ROOT


def recsys(*args, env=None):
    return subprocess.run([str(BIN/'recsys'), *args], capture_output=True, text=True, env=env, timeout=300)


def test_compare_prints_metrics_table(clean_env):
    r = recsys('compare', '--preset', 'tiny', '--models', 'popularity', env=clean_env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    header = next(l for l in lines if 'ndcg@10' in l).split()
    row = next(l for l in lines if l.startswith('popularity')).split()
    assert {'recall@10', 'coverage@10', 'novelty@10'} <= set(header)
    values = dict(zip(header, map(float, row[1:])))
    assert all(0 <= v <= 1 for m, v in values.items() if m not in ('novelty@10', 'arp@10'))
    assert values['hit_rate@10'] > 0, "popularity should hit some held-out items"


def test_bad_input_exits_2_with_one_line(clean_env):
    r = recsys('compare', '--preset', 'tiny', '--models', 'svd', env=clean_env)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == "recsys compare: error: unknown model 'svd'; available: popularity, itemknn, ease, als, sasrec"


def test_version():
    r = recsys('--version')
    assert r.returncode == 0 and r.stdout.startswith('recsys_lib ')



def patched_recsys(tmp_path, patch, *args, env):
    "`recsys ARGS` with `patch` run first in its process: a fault the commands do not expect."
    driver = tmp_path/'patched_recsys.py'
    driver.write_text(f"import sys\n{patch}\nfrom recsys_lib.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    return subprocess.run([str(BIN/'python'), str(driver), *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize('raised, code, line', [
    ("ZeroDivisionError('injected')", 1, "recsys runs: error: ZeroDivisionError: injected (rerun with --debug for the traceback)"),
    ("RecsysError('injected')", 2, "recsys runs: error: injected"),
    ("KeyboardInterrupt()", 130, "recsys runs: interrupted"),
])
def test_any_error_is_one_line_and_debug_adds_the_traceback(raised, code, line, clean_env, tmp_path):
    patch = f"import recsys_lib.runs as r\nfrom recsys_lib.core import RecsysError\ndef fault(*a, **k): raise {raised}\nr.list_runs = fault"
    r = patched_recsys(tmp_path, patch, 'runs', env=clean_env)
    assert (r.returncode, r.stderr.strip().splitlines()[-1]) == (code, line), r.stderr[-2000:]
    assert 'Traceback' not in r.stderr
    for args in (['--debug', 'runs'], ['runs', '--debug']):   # before or after the subcommand
        r = patched_recsys(tmp_path, patch, *args, env=clean_env)
        assert r.returncode == code and 'Traceback' in r.stderr and r.stderr.strip().splitlines()[-1] == line.split(' (rerun')[0]


# `-p NAME=VALUE` as well as papermill's `-p NAME VALUE`, `recsys runs` and `recsys show`, on tiny notebooks

TINY_PARAMS = textwrap.dedent('''\
    model: str = 'popularity'   # a model name
    expr: str = ''              # text that may hold '='
    columns: dict = {}          # a rename map''')


def run_dir_of(r) -> Path:
    "The run folder `recsys run` printed on its second line."
    assert r.returncode == 0, r.stderr[-2000:]
    return Path(r.stdout.splitlines()[1])


@pytest.mark.parametrize('words', [
    ['-p', 'model=ease', '-p', 'expr', 'a=b', '-p', 'columns', '{"a": "b"}'],   # a two-word VALUE keeps its '='
    ['-p', 'model', 'ease', '-p', 'expr=a=b', '-p', 'columns={"a": "b"}'],      # NAME=VALUE splits at the first '='
    ['--param=model=ease', '--param', 'expr', 'a=b', '--param', 'columns', '{"a": "b"}'],
])
def test_run_takes_name_equals_value_and_name_value(words, clean_env, tmp_path):
    nb = new_notebook(tmp_path/'tiny.ipynb', TINY_PARAMS, 'assert (model, expr, columns) == ("ease", "a=b", {"a": "b"}), (model, expr, columns)')
    run_dir = run_dir_of(recsys('run', str(nb), *words, '--no-progress', '--no-track', env=clean_env))
    assert json.loads((run_dir/'params.json').read_text()) == {'model': 'ease', 'expr': 'a=b', 'columns': {'a': 'b'}}
    assert json.loads((run_dir/'manifest.json').read_text())['status'] == 'succeeded'


@pytest.mark.parametrize('words, line', [
    (['-p', '=ease'], "recsys run: error: -p '=ease': expected NAME=VALUE or NAME VALUE, where NAME is a parameter name "
                      "(letters, digits and _, not starting with a digit)"),
    (['-p'], "recsys run: error: -p takes NAME=VALUE or NAME VALUE; nothing follows it"),
    (['-p', 'model'], "recsys run: error: -p model: no VALUE; expected model=VALUE or model VALUE"),
    (['-p', 'model', '--no-track'], "recsys run: error: -p model: no VALUE; expected model=VALUE or model VALUE"),
])
def test_bad_param_forms_are_usage_errors(words, line, clean_env, tmp_path):
    nb = new_notebook(tmp_path/'tiny.ipynb', TINY_PARAMS, 'model')
    r = recsys('run', str(nb), *words, env=clean_env)
    assert (r.returncode, r.stderr.strip().splitlines()[-1]) == (2, line)
    assert 'Traceback' not in r.stderr and not (tmp_path/'runs').exists()


def test_runs_shows_model_and_each_notebooks_key_metric(clean_env, tmp_path):
    "Each run shows the metric its own notebook logs, though the newest runs log other names; lines fit 120 columns."
    log = "from recsys_lib.record import log_metrics\nlog_metrics({})"
    notebooks = [
        ('train', "model: str = 'ease'  # model", log.format("{'test_ndcg@10': 0.3, 'valid_ndcg@10': 0.25, 'test_recall@10': 0.5}")),
        ('evaluate', "registered_model: str = 'recsys'  # registry entry",
         log.format("{'champion_ndcg@10': 0.29, 'challenger_ndcg@10': 0.31, 'champion_recall@10': 0.4}")),
        ('monitor', "registered_model: str = 'recsys'  # registry entry", log.format("{'new_items': 0.02, 'retrain_due': 1}")),
        ('broken', "n: int = 1  # nothing", 'raise ValueError("x" * 300)'),
    ]
    for name, params, code in notebooks:   # one after another: the newest run is the failed one
        r = recsys('run', str(new_notebook(tmp_path/f'{name}.ipynb', params, code)), '--no-progress', '--no-track', env=clean_env)
        assert r.returncode == (1 if name == 'broken' else 0), r.stderr[-2000:]
    r = recsys('runs', env=clean_env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ['notebook', 'run', 'status', 'model', 'metric', '/', 'reason']
    assert max(map(len, lines)) <= 120
    rows = {l.split()[0]: l.split(maxsplit=4)[2:] for l in lines[1:]}
    assert rows['train'] == ['succeeded', 'ease', 'ndcg@10 test=0.3 valid=0.25']
    assert rows['evaluate'] == ['succeeded', 'recsys', 'ndcg@10 challenger=0.31 champion=0.29']
    assert rows['monitor'] == ['succeeded', 'recsys', 'retrain_due=1']
    broken = next(l for l in lines if l.startswith('broken'))
    assert broken.split()[2] == 'failed' and 'cell 3 raised ValueError: xxx' in broken
    assert len(broken) == 120 and broken.endswith('…')   # the reason is cut to the line, and says so


def test_show_names_the_mlflow_run_and_the_registered_version(clean_env, tmp_path):
    train = run_dir_of(recsys('run', str(ROOT/'pipelines'/'train.ipynb'), '-p', 'preset=tiny', '-p', 'model=popularity',
                              '-p', 'registered_model=cli-show', '--no-progress', env=clean_env))
    registered, = json.loads((train/'registered.json').read_text())
    manifest = json.loads((train/'manifest.json').read_text())
    assert registered['mlflow_run_id'] == manifest['mlflow_run_id'] and len(manifest['mlflow_run_id']) == 32
    tiny = new_notebook(tmp_path/'tiny.ipynb', TINY_PARAMS, 'model')
    logged = run_dir_of(recsys('run', str(tiny), '--no-progress', env=clean_env))   # logged, no model to register
    untracked = run_dir_of(recsys('run', str(tiny), '--no-progress', '--no-track', env=clean_env))
    shown = {}
    for run_dir in (train, logged, untracked):
        r = recsys('show', run_dir.name, env=clean_env)
        assert r.returncode == 0, r.stderr
        shown[run_dir] = [l for l in r.stdout.splitlines() if l.startswith(('tracking', 'registry'))]
    assert shown[train] == [f"tracking  MLflow run {manifest['mlflow_run_id']}", "registry  'cli-show' version 1"]
    logged_id = json.loads((logged/'manifest.json').read_text())['mlflow_run_id']
    assert shown[logged] == [f"tracking  MLflow run {logged_id}"] and logged_id != manifest['mlflow_run_id']
    assert shown[untracked] == ["tracking  not logged to MLflow"]
