"""Faults of pipeline runs driven through the `recsys` command, as a scheduler would: bad parameters and settings are
refused before anything runs, a store that cannot hold a run folder is named, a failed run is rerun exactly, and two
runs registering at the same moment both land in the embedded MLflow store."""
import json, os, shutil, subprocess

import nbformat
import pytest

from conftest import BIN, ROOT, one_line_error

TRAIN = ROOT/'pipelines'/'train.ipynb'


def recsys(*args, env, timeout=600):
    return subprocess.run([str(BIN/'recsys'), *map(str, args)], env=env, capture_output=True, text=True, timeout=timeout)


def mlflow_client(env):
    import mlflow
    return mlflow.MlflowClient(tracking_uri=env['RECSYS_LOCAL_TRACKING_URI'], registry_uri=env['RECSYS_LOCAL_REGISTRY_URI'])


@pytest.mark.parametrize('args, files, message', [
    (['-p', 'nope', '1'], {}, "unknown parameter 'nope'"),
    (['-p', 'k', 'ten'], {}, "'k' (int)"),
    (['-f', 'list.yaml'], {'list.yaml': '- a\n- b\n'}, "must hold a mapping of parameter names to values, got list"),
    (['-f', 'tag.yaml'], {'tag.yaml': 'model: !!python/object/apply:os.system ["touch pwned"]\n'},
     "could not determine a constructor for the tag"),
    (['--profile', 'nope'], {}, "profile [nope] is not in"),
])
def test_bad_parameters_and_profiles_are_refused_before_anything_runs(args, files, message, clean_env, tmp_path):
    for name, text in files.items(): (tmp_path/name).write_text(text)
    args = [tmp_path/a if a in files else a for a in args]
    line = one_line_error(recsys('run', TRAIN, *args, env=clean_env), 2)
    assert message in line
    assert not (tmp_path/'runs').exists() and not (tmp_path/'mlflow.db').exists()
    assert not (tmp_path/'pwned').exists() and not (ROOT/'pwned').exists()   # the YAML tag constructed nothing


def test_missing_required_parameter_is_refused(clean_env, tmp_path):
    from recsys_lib.params import new_notebook
    nb = new_notebook(tmp_path/'needs.ipynb', 'data_path: str = None  # required: input file', 'print(data_path)')
    assert "required parameter 'data_path'" in one_line_error(recsys('run', nb, env=clean_env), 2)
    assert not (tmp_path/'runs').exists()


@pytest.mark.parametrize('edit, message', [
    (lambda ini: ini.replace('seed = 42', 'seed = abc'), "setting 'seed' from [local]"),
    (lambda ini: ini.replace('[local]\n', ''), "profile [local] is not in"),
])
def test_broken_settings_file_is_named(edit, message, clean_env, tmp_path):
    bad = tmp_path/'settings.ini'
    bad.write_text(edit((ROOT/'settings.ini').read_text()))
    line = one_line_error(recsys('run', TRAIN, env={**clean_env, 'RECSYS_SETTINGS': str(bad)}), 2)
    assert message in line and str(bad) in line


def test_store_that_cannot_hold_a_run_folder_is_named(clean_env, tmp_path):
    # root can write into a read-only directory, so the fault is a run root whose parent is a file
    (tmp_path/'a_file').write_text('')
    line = one_line_error(recsys('run', TRAIN, '--run-root', tmp_path/'a_file'/'runs', env=clean_env), 2)
    assert 'cannot create a run folder under' in line and 'Not a directory' in line
    assert not (tmp_path/'mlflow.db').exists()


def test_rerun_repeats_a_failed_run_with_its_notebook_and_parameters(clean_env, tmp_path):
    from recsys_lib.synthetic import make_synthetic
    nb, data = tmp_path/'train.ipynb', tmp_path/'events.csv'
    shutil.copy(TRAIN, nb)
    params = ['-p', 'data_path', data, '-p', 'model', 'popularity', '-p', 'registered_model', 'late', '--no-progress']
    line = one_line_error(recsys('run', nb, *params, env=clean_env), 1)   # the upstream table is late
    assert line.startswith('recsys run: failed:') and 'does not exist' in line
    failed, = (tmp_path/'runs'/'train').iterdir()
    assert mlflow_client(clean_env).search_registered_models() == []
    # the notebook is edited after the failure: a rerun must still execute the version that failed
    edited = nbformat.read(nb, as_version=4)
    edited.cells.append(nbformat.v4.new_code_cell("raise RuntimeError('edited after the run')"))
    nbformat.write(edited, nb)
    make_synthetic(n_users=200, n_items=100, n_interactions=3000, seed=0).to_csv(data, index=False)   # the table lands
    r = recsys('rerun', failed.name, '--no-progress', env=clean_env)
    assert r.returncode == 0, r.stderr[-2000:]
    again = next(d for d in (tmp_path/'runs'/'train').iterdir() if d != failed)
    manifest = json.loads((again/'manifest.json').read_text())
    assert manifest['status'] == 'succeeded' and manifest['rerun_of'] == f"train/{failed.name}"
    assert (again/'params.json').read_text() == (failed/'params.json').read_text()
    assert (again/'source.ipynb').read_bytes() == (failed/'source.ipynb').read_bytes()
    assert [v.version for v in mlflow_client(clean_env).search_model_versions("name='late'")] == [1]


def test_fresh_store_opened_by_several_processes_at_once(clean_env):
    "Without the store's file lock most of these fail with `table ... already exists` (13 of 16 in a trial run)."
    opener = ("from recsys_lib.tracking import get_client\n"
              "c = get_client(); c.search_experiments(); c.search_registered_models()")
    procs = [subprocess.Popen([str(BIN/'python'), '-c', opener], env=clean_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    errors = [err for p in procs for out, err in [p.communicate(timeout=300)] if p.returncode]
    assert not errors, errors[0][-2000:]


# `recsys run` as the console script runs it, except that registering waits at a barrier of files until both runs
# are there: without it the two notebooks' run times decide the order and the registrations hardly ever overlap.
RUN_REGISTERING_AT_THE_BARRIER = """
import sys, time
from pathlib import Path
import recsys_lib.pipeline as pipeline
from recsys_lib.cli import main
barrier, me, register_run = Path(sys.argv[1]), sys.argv[2], pipeline.register_run
def register_when_both_are_ready(*args, **kwargs):
    (barrier/me).touch()
    deadline = time.monotonic() + 300
    while len(list(barrier.iterdir())) < 2:
        if time.monotonic() > deadline: raise SystemExit(f"{me}: the other run never reached its registration")
        time.sleep(0.005)
    return register_run(*args, **kwargs)
pipeline.register_run = register_when_both_are_ready   # what `recsys run` calls once the notebook has finished
sys.exit(main(sys.argv[3:]))
"""


def test_two_runs_registering_at_once_both_land(clean_env, tmp_path):
    barrier = tmp_path/'barrier'
    barrier.mkdir()
    # output to files, not pipes: a run blocked on a full pipe nobody reads yet would never reach the barrier
    logs = {model: tmp_path/f'{model}.log' for model in ('popularity', 'itemknn')}
    runs = {}
    for model, log in logs.items():
        with log.open('w') as out:   # the child holds its own copy of the file
            runs[model] = subprocess.Popen([str(BIN/'python'), '-c', RUN_REGISTERING_AT_THE_BARRIER, str(barrier), model,
                                            'run', str(TRAIN), '-p', 'preset', 'tiny', '-p', 'model', model,
                                            '-p', 'registered_model', 'race', '--no-progress'],
                                           env=clean_env, stdout=out, stderr=subprocess.STDOUT)
    for model, p in runs.items():
        assert p.wait(timeout=600) == 0, logs[model].read_text()[-2000:]
    assert sorted(f.name for f in barrier.iterdir()) == ['itemknn', 'popularity']   # both registered from the barrier
    client = mlflow_client(clean_env)
    versions = client.search_model_versions("name='race'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    recorded = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert sorted(r.data.tags.get('recsys.status') for r in recorded) == ['succeeded', 'succeeded']
    assert len({v.run_id for v in versions}) == 2 and {v.run_id for v in versions} == {r.info.run_id for r in recorded}
    folders = sorted((tmp_path/'runs'/'train').iterdir())
    assert len(folders) == 2
    from recsys_lib.registry import load_registered_model
    with pytest.MonkeyPatch.context() as mp:
        for k, v in clean_env.items():
            if k.startswith('RECSYS_'): mp.setenv(k, v)
        models = {type(load_registered_model('race', version=int(v.version))).__name__ for v in versions}
    assert models == {'Popularity', 'ItemKNN'}


class _Crash(BaseException):
    "Stands for the process dying at this point: nothing after it runs, and what the store committed stays."


@pytest.mark.parametrize('crash_at', ['create_model_version', 'set_registered_model_alias'])
def test_crash_inside_registration_is_completed_by_registering_again(crash_at, clean_env, tmp_path, monkeypatch):
    "A crash between writing the model and registering it leaves no version or a whole one; registering again completes it once."
    import mlflow
    from recsys_lib.pipeline import register_run
    from recsys_lib.runner import run_notebook
    for k, v in clean_env.items():
        if k.startswith('RECSYS_'): monkeypatch.setenv(k, v)
    res = run_notebook(TRAIN, {'preset': 'tiny', 'model': 'popularity', 'registered_model': 'crashy'}, progress=False)
    assert res.ok and (res.run_dir/'model'/'manifest.json').is_file()
    real = getattr(mlflow.MlflowClient, crash_at)
    def crash(*a, **k): raise _Crash(crash_at)
    monkeypatch.setattr(mlflow.MlflowClient, crash_at, crash)
    with pytest.raises(_Crash): register_run(res.run_dir)
    client = mlflow_client(clean_env)
    versions = client.search_model_versions("name='crashy'")
    if crash_at == 'create_model_version': assert versions == []             # neither a version...
    else:                                                                     # ... or a whole one, its model in the store
        assert [int(v.version) for v in versions] == [1]
        assert 'model/manifest.json' in {f.path for f in client.list_artifacts(versions[0].run_id, 'model')}
    monkeypatch.setattr(mlflow.MlflowClient, crash_at, real)
    again = register_run(res.run_dir)                                         # the recovery: register the run again
    assert again['version'] == 1 and [int(v.version) for v in client.search_model_versions("name='crashy'")] == [1]
    assert client.get_registered_model('crashy').aliases == {'challenger': 1}
    assert len(client.search_runs([e.experiment_id for e in client.search_experiments()])) == 1   # the run is logged once


def test_parameter_mlflow_cannot_store_is_refused_before_anything_runs(clean_env, tmp_path):
    "It used to fail only after the run succeeded, when the run was logged to MLflow, with exit 2."
    line = one_line_error(recsys('run', TRAIN, '-p', 'preset', 'tiny', '-p', 'registered_model', 'm' * 6001, env=clean_env), 2)
    assert "parameter 'registered_model' is 6001 characters long; MLflow keeps at most 6000" in line
    assert not (tmp_path/'runs').exists() and not (tmp_path/'mlflow.db').exists()


def test_a_damaged_store_is_refused_before_anything_runs(clean_env, tmp_path):
    "A store that cannot be logged to is found before the notebook runs: exit 2, no run folder."
    (tmp_path/'mlflow.db').write_text('this is not a database\n' * 100)
    r = recsys('run', TRAIN, '-p', 'preset', 'tiny', '-p', 'model', 'popularity', '-p', 'registered_model', 'lost',
               '--no-progress', env=clean_env)
    line = one_line_error(r, 2)
    assert 'mlflow.db is not a usable SQLite database' in line and not (tmp_path/'runs').exists()


def test_store_that_fails_when_the_run_is_logged_keeps_the_run_succeeded(clean_env, tmp_path):
    "The store breaks while the notebook runs: the notebook succeeded and its record says so; the failed logging is recorded beside it, exit 1."
    from recsys_lib.params import new_notebook
    db = tmp_path/'mlflow.db'
    nb = new_notebook(tmp_path/'breaks_store.ipynb', f'db: str = {str(db)!r}  # the store to damage', "open(db, 'w').write('not a database\\n' * 100)")
    r = recsys('run', str(nb), '--no-progress', env=clean_env)
    line = one_line_error(r, 1)
    run, = (tmp_path/'runs'/'breaks_store').iterdir()
    assert line.startswith(f"recsys run: succeeded, but logging it to MLflow failed: ") and str(run) in line
    manifest = json.loads((run/'manifest.json').read_text())
    assert manifest['status'] == 'succeeded' and manifest['tracking_error']


def _permissions_apply():
    "preexec_fn under which file permissions bind a subprocess even when the tests run as root; skip where they cannot."
    if os.geteuid() != 0: return None
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    def drop_override():   # CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, out of the bounding set: root then obeys file modes
        for cap in (1, 2):
            if libc.prctl(24, cap, 0, 0, 0): raise OSError(ctypes.get_errno(), 'prctl(PR_CAPBSET_DROP)')
    try: subprocess.run(['true'], preexec_fn=drop_override, check=True)
    except (OSError, subprocess.SubprocessError): pytest.skip("running as root and cannot drop CAP_DAC_OVERRIDE: permissions have no effect")
    return drop_override


@pytest.fixture
def two_runs(clean_env, tmp_path, monkeypatch):
    "A run of `train` and one of `evaluate` (tiny notebooks) under tmp_path/runs."
    from recsys_lib.params import new_notebook
    from recsys_lib.runner import run_notebook
    for k, v in clean_env.items():
        if k.startswith('RECSYS_'): monkeypatch.setenv(k, v)
    return {stem: run_notebook(new_notebook(tmp_path/f'{stem}.ipynb', f'x: int = {x}  # a number', 'x + 1'), progress=False).run_dir
            for x, stem in enumerate(('train', 'evaluate'))}   # different parameters: different folder names


def test_unreadable_run_folders_are_named_not_crashed_on_or_hidden(two_runs, clean_env, tmp_path):
    as_user = _permissions_apply()
    def cli(*args): return subprocess.run([str(BIN/'recsys'), *args], env=clean_env, capture_output=True, text=True,
                                          timeout=300, preexec_fn=as_user)
    train, evaluate = two_runs['train'], two_runs['evaluate']
    for locked, file in [(train.parent, None), (train, None), (train, 'manifest.json')]:
        target = locked/file if file else locked
        target.chmod(0)
        try:
            r = cli('runs')                                    # lists the readable runs, names the rest on one line
            assert r.returncode == 0 and 'Traceback' not in r.stderr, r.stderr
            assert evaluate.name in r.stdout and train.name not in r.stdout
            warning, = [l for l in r.stderr.splitlines() if 'cannot read' in l]
            assert str(target) in warning and 'permissions' in warning
            for args in (['show', f'train/{train.name}'], ['rerun', f'train/{train.name}', '--no-track'], ['show', train.name]):
                line = one_line_error(cli(*args), 2)           # nothing ran: refused, naming what to fix
                assert 'cannot read' in line and 'permissions' in line, line
                assert str(target) in line, line
        finally: target.chmod(0o755 if file is None else 0o644)
    assert sorted(p.name for p in (tmp_path/'runs'/'train').iterdir()) == [train.name]   # no rerun started
    (train/'params.json').chmod(0)
    try: line = one_line_error(cli('rerun', f'train/{train.name}', '--no-track'), 2)   # never a rerun with default parameters
    finally: (train/'params.json').chmod(0o644)
    assert str(train/'params.json') in line
