"""The SageMaker container path end to end on this machine: `run_local_job` stages the container contract, runs the
real entrypoint (`python -m recsys_lib.sagemaker.entrypoint`) in a subprocess, and collects its outputs.

Stores (runs, data, MLflow) of the `sagemaker-local` profile live under tmp_path; nothing touches the network.
"""
import json, subprocess, sys
from pathlib import Path

import pandas as pd
import pytest

from recsys_lib.params import new_notebook
from recsys_lib.sagemaker.local import run_local_job
from recsys_lib.settings import load_settings

from conftest import BIN, ROOT, isolated_tracking, one_line_error


@pytest.fixture
def sm_env(tmp_path, monkeypatch):
    "The sagemaker-local profile with its runs, data and MLflow stores under tmp_path; no inherited RECSYS_* overrides."
    import os, tempfile
    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path))   # emulated container roots (keep_root=True) land here
    for k in [k for k in os.environ if k.startswith('RECSYS_')]: monkeypatch.delenv(k)
    monkeypatch.setenv('RECSYS_SETTINGS', str(ROOT/'settings.ini'))
    monkeypatch.setenv('RECSYS_SAGEMAKER_LOCAL_RUNS_DIR', str(tmp_path/'runs'))
    monkeypatch.setenv('RECSYS_SAGEMAKER_LOCAL_DATA_DIR', str(tmp_path/'data'))
    for k, v in isolated_tracking(tmp_path).items():
        monkeypatch.setenv(k.replace('RECSYS_LOCAL_', 'RECSYS_SAGEMAKER_LOCAL_'), v)
    return tmp_path


@pytest.fixture
def tiny_notebook(tmp_path):
    return new_notebook(tmp_path/'tiny.ipynb', '''\
epochs: int = 1  # passes
lr: float = 0.1  # step
opts: dict = {}  # options
flag: bool = False  # a switch''', '''\
from recsys_lib.record import current_run_dir, log_metrics
assert isinstance(epochs, int) and isinstance(lr, float) and isinstance(opts, dict) and flag is True
log_metrics({'loss': epochs * lr * opts['scale']})
(current_run_dir()/'model').mkdir(); (current_run_dir()/'model'/'w.json').write_text('[1, 2]')''')


def test_entrypoint_import_is_free_of_the_sdk():
    code = ("import sys, recsys_lib.sagemaker.entrypoint; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('sagemaker', 'boto3', 'botocore')]; assert not bad, bad")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_tiny_notebook_succeeds_with_typed_parameters(sm_env, tiny_notebook):
    res = run_local_job(tiny_notebook, load_settings('sagemaker-local'), {'epochs': 3, 'lr': 0.5, 'opts': {'scale': 2}, 'flag': True}, keep_root=True)
    assert (res.status, res.exit_code, res.reason) == ('succeeded', 0, None)
    assert res.metrics == {'loss': 3.0}
    # the container saw strings only; the notebook got typed values
    hps = json.loads((res.root/'input'/'config'/'hyperparameters.json').read_text())
    assert hps == {'recsys_notebook': 'tiny.ipynb', 'recsys_registry_profile': 'sagemaker-local', 'epochs': '3', 'lr': '0.5', 'opts': '{"scale": 2}', 'flag': 'true'}
    assert json.loads((res.run_dir/'params.json').read_text()) == {'epochs': 3, 'lr': 0.5, 'opts': {'scale': 2}, 'flag': True}
    # collected under the profile's runs_dir like a local run, with the model and the job's record
    assert res.run_dir.parent == sm_env/'runs'/'tiny'
    assert {'tiny.ipynb', 'params.json', 'metrics.json', 'manifest.json', 'job.log', 'model'} <= {p.name for p in res.run_dir.iterdir()}
    assert (res.run_dir/'model'/'w.json').read_text() == '[1, 2]'
    manifest = json.loads((res.run_dir/'manifest.json').read_text())
    assert manifest['status'] == 'succeeded' and manifest['job']['backend'] == 'sagemaker-local'
    assert (res.root/'model.tar.gz').is_file() and (res.root/'output.tar.gz').is_file()
    assert not (res.root/'output'/'failure').exists()
    # the job's own stores stayed inside the container root
    assert not (sm_env/'mlflow.db').exists() and not (sm_env/'data').exists()


def test_failing_notebook_writes_failure_and_exits_nonzero(sm_env, tmp_path):
    bad = new_notebook(tmp_path/'bad.ipynb', 'd: int = 0  # divisor', 'x = 1', 'x / d')
    res = run_local_job(bad, load_settings('sagemaker-local'), keep_root=True)
    reason = "notebook bad.ipynb failed: cell 4 raised ZeroDivisionError: division by zero"
    assert (res.status, res.exit_code, res.reason) == ('failed', 1, reason)
    assert (res.root/'output'/'failure').read_text().strip() == reason
    assert not (res.run_dir/'model').exists() and not any((res.root/'model').iterdir())
    manifest = json.loads((res.run_dir/'manifest.json').read_text())
    assert manifest['status'] == 'failed' and manifest['job']['failure_reason'] == reason
    assert (res.run_dir/'bad.ipynb').is_file()   # the executed notebook comes back with the failure


def test_bad_hyperparameter_is_rejected_with_exit_2(sm_env, tiny_notebook):
    res = run_local_job(tiny_notebook, load_settings('sagemaker-local'), {'epochs': 'three'}, keep_root=True)
    assert (res.status, res.exit_code, res.run_dir) == ('rejected', 2, None)
    failure = (res.root/'output'/'failure').read_text()
    assert "parameter 'epochs' (int) got 'three'" in failure
    assert not (sm_env/'runs').exists() or not any((sm_env/'runs').iterdir())


def test_train_pipeline_through_the_container_then_registered(sm_env):
    from recsys_lib import registry
    from recsys_lib.pipeline import register_run
    res = run_local_job(ROOT/'pipelines'/'train.ipynb', load_settings('sagemaker-local'),
                        {'preset': 'tiny', 'model': 'popularity', 'registered_model': 'sm-e2e'})
    assert res.ok, (res.reason, (res.run_dir/'job.log').read_text()[-3000:] if res.run_dir else None)
    assert res.metrics['test_ndcg@10'] > 0
    assert (res.run_dir/'model'/'manifest.json').is_file()
    records = json.loads((res.run_dir/'records.json').read_text())
    assert records['split_dir'] == str(res.run_dir/'split') and (res.run_dir/'split'/'split.parquet').is_file()
    assert records['training_data']['split_dir'] == str(res.run_dir/'split')   # the lineage the registry keeps, not the job's scratch copy
    out = register_run(res.run_dir, 'sagemaker-local')
    assert (out['registered_model'], out['version']) == ('sm-e2e', 1)
    assert (sm_env/'mlflow.db').is_file()
    model = registry.load_registered_model('sm-e2e', version=1, profile='sagemaker-local')
    assert type(model).__name__.lower().startswith('popularity')
    assert not (sm_env/'data').exists()   # the job's data store was the container's


def test_recsys_run_on_the_sagemaker_local_profile(sm_env):
    "The command a scientist types: the same train notebook, the emulated container, the model registered."
    import os
    env = dict(os.environ)
    r = subprocess.run([str(BIN/'recsys'), 'run',
                        ROOT/'pipelines'/'train.ipynb', '--profile', 'sagemaker-local', '-p', 'preset', 'tiny',
                        '-p', 'model', 'popularity', '-p', 'registered_model', 'sm-cli'], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "registered 'sm-cli' version 1" in r.stdout
    # batch inference runs as a processing job; the registered version travels as the job's model channel
    r = subprocess.run([str(BIN/'recsys'), 'run', ROOT/'pipelines'/'batch_inference.ipynb', '--profile', 'sagemaker-local',
                        '-p', 'registered_model', 'sm-cli', '-p', 'alias', 'challenger', '-p', 'k', '5'],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    run_dir = Path(r.stdout.strip().splitlines()[-1])
    manifest = json.loads((run_dir/'manifest.json').read_text())
    assert manifest['job']['mode'] == 'processing'
    assert json.loads((run_dir/'params.json').read_text())['model_path'].endswith('/processing/input/model')
    reco = pd.read_parquet(run_dir/'recommendations')
    assert reco.groupby('user_id').size().eq(5).all() and reco.user_id.nunique() > 100
    # a bad parameter for the cloud profile is refused before any AWS call (no credentials are needed to see it)
    r = subprocess.run([str(BIN/'recsys'), 'run', ROOT/'pipelines'/'train.ipynb', '--profile', 'sagemaker', '-p', 'k', 'ten'],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "parameter 'k' (int) got 'ten'" in r.stderr, r.stderr


def _container(tmp_path, notebook, hps=None):
    "A container root with `notebook` in the code channel; the environment the entrypoint runs with."
    import os
    root = tmp_path/'opt-ml'
    (root/'input'/'config').mkdir(parents=True)
    (root/'input'/'data'/'code').mkdir(parents=True)
    (root/'input'/'config'/'hyperparameters.json').write_text(json.dumps({'recsys_notebook': notebook.name, **(hps or {})}))
    notebook.rename(root/'input'/'data'/'code'/notebook.name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(('RECSYS_', 'SM_'))}
    env.update(RECSYS_SM_ROOT=str(root), RECSYS_SETTINGS=str(ROOT/'settings.ini'))
    return root, env


def test_sigterm_stops_the_job_as_interrupted_and_keeps_the_notebook(tmp_path):
    "SageMaker stops a job (StopTrainingJob, spot reclaim) with SIGTERM: the run is recorded, exported, and fails."
    import signal, time
    nb = new_notebook(tmp_path/'slow.ipynb', 'n: int = 1  # count', 'import time\nprint("started", flush=True)', 'time.sleep(120)')
    root, env = _container(tmp_path, nb)
    p = subprocess.Popen([sys.executable, '-m', 'recsys_lib.sagemaker.entrypoint'], env=env, cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list((root/'recsys'/'runs').glob('slow/*/slow.ipynb')):
        time.sleep(0.5)   # the runner saves the notebook as cells finish: the sleeping cell has started
    time.sleep(2)
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 130, out
    failure = (root/'output'/'failure').read_text()
    assert failure.startswith('notebook slow.ipynb interrupted'), failure
    job = json.loads((root/'output'/'data'/'job.json').read_text())
    assert job['status'] == 'interrupted' and job['exit_code'] == 130
    assert (root/'output'/'data'/'slow.ipynb').is_file() and not (root/'model').exists()


def test_only_the_leader_host_exports(tmp_path, tiny_notebook):
    root, env = _container(tmp_path, tiny_notebook, {'epochs': '1', 'lr': '1', 'opts': '{"scale": 1}', 'flag': 'true'})
    env.update(SM_HOSTS='["algo-1", "algo-2"]', SM_CURRENT_HOST='algo-2')
    r = subprocess.run([sys.executable, '-m', 'recsys_lib.sagemaker.entrypoint'], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert not (root/'model').exists() and not (root/'output'/'data').exists()   # the follower wrote nothing to upload
    env['SM_CURRENT_HOST'] = 'algo-1'
    r = subprocess.run([sys.executable, '-m', 'recsys_lib.sagemaker.entrypoint'], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (root/'model'/'w.json').is_file() and json.loads((root/'output'/'data'/'job.json').read_text())['status'] == 'succeeded'


def _ratings_csv(path):
    "A real interactions file: the tiny synthetic preset as CSV."
    from recsys_lib.synthetic import SYNTHETIC_PRESETS, make_synthetic
    path.parent.mkdir(parents=True, exist_ok=True)
    make_synthetic(**SYNTHETIC_PRESETS['tiny']).to_csv(path, index=False)
    return path


def test_recsys_run_stages_a_local_data_path_as_a_channel(sm_env, tmp_path):
    "`-p data_path ./my.csv` from the user's folder: the file travels as channel data_path, the notebook reads the copy."
    import os
    from recsys_lib.data import read_interactions
    work, tmpdir = tmp_path/'work', tmp_path/'tmp'
    csv = _ratings_csv(work/'my.csv')
    tmpdir.mkdir()
    env = {**os.environ, 'TMPDIR': str(tmpdir)}   # the emulated container roots land here
    recsys = [str(BIN/'recsys'), 'run', str(ROOT/'pipelines'/'train.ipynb'), '--profile', 'sagemaker-local']
    r = subprocess.run(recsys + ['-p', 'data_path', './my.csv', '-p', 'model', 'popularity', '--no-track'],
                       cwd=work, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "parameter data_path: %s travels as channel data_path; the job reads $SM_CHANNEL_DATA_PATH/my.csv" % csv in r.stderr
    run_dir = Path(r.stdout.strip().splitlines()[-1])
    # inside the container the parameter named the channel's copy, not the original file
    seen = json.loads((run_dir/'params.json').read_text())['data_path']
    assert seen.startswith(str(tmpdir/'recsys-sm-')) and seen.endswith('/input/data/data_path/my.csv'), seen
    assert json.loads((run_dir/'manifest.json').read_text())['job']['channels'] == {'data_path': str(csv)}
    # and the notebook trained on that file's rows, not on a synthetic preset
    records = json.loads((run_dir/'records.json').read_text())
    assert records['data_fingerprints']['interactions'] == read_interactions(csv).fingerprint()
    assert list(tmpdir.iterdir()) == []   # the container root is gone
    # a path that does not exist is refused before anything is staged, with the explicit form to use
    runs_before = sorted((sm_env/'runs').rglob('manifest.json'))
    r = subprocess.run(recsys + ['-p', 'data_path', './missing.csv'], cwd=work, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    assert f"parameter 'data_path': ./missing.csv does not exist on this machine ({work/'missing.csv'})" in r.stderr
    assert "--channel data_path SOURCE -p data_path '$SM_CHANNEL_DATA_PATH/missing.csv'" in r.stderr and 'Traceback' not in r.stderr
    assert sorted((sm_env/'runs').rglob('manifest.json')) == runs_before and list(tmpdir.iterdir()) == []


def test_staged_file_is_a_copy_the_job_cannot_write_back_into(sm_env, tmp_path):
    "As in the cloud, the job gets a snapshot: a notebook that rewrites its input changes the channel's copy only."
    nb = new_notebook(tmp_path/'touch.ipynb', 'data_path: str | None = None  # a file', '''\
from pathlib import Path
p = Path(data_path)
assert not p.is_symlink() and p.read_text() == 'original', (p, p.read_text())
p.write_text('changed by the job')''')
    data = tmp_path/'in'/'x.txt'
    data.parent.mkdir(); data.write_text('original')
    res = run_local_job(nb, load_settings('sagemaker-local'), {'data_path': str(data)}, keep_root=True)
    assert res.ok, res.reason
    copy = res.root/'input'/'data'/'data_path'/'x.txt'
    assert json.loads((res.run_dir/'params.json').read_text())['data_path'] == str(copy)
    assert json.loads((res.root/'input'/'config'/'hyperparameters.json').read_text())['data_path'] == '$SM_CHANNEL_DATA_PATH/x.txt'
    assert copy.read_text() == 'changed by the job' and data.read_text() == 'original'
    # the container's own path form works in the emulation too: /opt/ml/ is the emulated root
    res = run_local_job(nb, load_settings('sagemaker-local'), {'data_path': '/opt/ml/input/data/train/x.txt'}, channels={'train': data.parent}, keep_root=True)
    assert res.ok, res.reason
    assert json.loads((res.run_dir/'params.json').read_text())['data_path'] == str(res.root/'input'/'data'/'train'/'x.txt')
    assert data.read_text() == 'original'


def test_damaged_store_is_refused_before_the_job_is_staged(sm_env, tmp_path):
    "A truncated mlflow.db is found before the container is laid out, not after the job ran: exit 2, no run folder."
    import os
    (sm_env/'mlflow.db').write_text('this is not a database\n' * 100)
    nb = new_notebook(tmp_path/'fine.ipynb', 'x: int = 1  # a value', 'y = x + 1')
    staging = tmp_path/'staging'; staging.mkdir()
    r = subprocess.run([str(BIN/'recsys'), 'run', str(nb), '--profile', 'sagemaker-local'], capture_output=True, text=True,
                       env={**os.environ, 'TMPDIR': str(staging)}, timeout=300)
    assert 'mlflow.db is not a usable SQLite database' in one_line_error(r, 2)
    assert not (sm_env/'runs').exists() and list(staging.glob('recsys-sm-*')) == []
    # with --no-track the store is not the job's concern
    r = subprocess.run([str(BIN/'recsys'), 'run', str(nb), '--profile', 'sagemaker-local', '--no-track'], capture_output=True, text=True,
                       env={**os.environ, 'TMPDIR': str(staging)}, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def test_store_damaged_during_the_job_keeps_it_succeeded_and_exits_1(sm_env, tmp_path):
    "The job ran: a store that fails only when the run is logged is recorded beside the run, which stays succeeded; exit 1, not 2."
    import os
    db = sm_env/'mlflow.db'
    nb = new_notebook(tmp_path/'breaks_store.ipynb', f'db: str = {str(db)!r}  # the store to damage',
                      "open(db, 'w').write('not a database\\n' * 100)")
    r = subprocess.run([str(BIN/'recsys'), 'run', str(nb), '--profile', 'sagemaker-local'], capture_output=True, text=True,
                       env=dict(os.environ), timeout=300)
    line = one_line_error(r, 1)
    run, = (sm_env/'runs'/'breaks_store').iterdir()
    assert line.startswith("recsys run: job recsys-breaks-store-") and "succeeded, but logging it to MLflow failed: " in line, line
    assert f"register_run('{run}', 'sagemaker-local')" in line
    manifest = json.loads((run/'manifest.json').read_text())
    assert manifest['status'] == 'succeeded' and 'mlflow.db' in manifest['tracking_error']
    # in process, the result says the same
    db.unlink()
    res = run_local_job(nb, load_settings('sagemaker-local'), track=True)
    assert (res.status, res.tracked) == ('succeeded', {}) and res.tracking_error
    assert json.loads((res.run_dir/'manifest.json').read_text())['tracking_error'] == res.tracking_error


@pytest.fixture
def server_profile(sm_env, monkeypatch):
    """The sagemaker-local profile on an MLflow server on 127.0.0.1, which jobs reach as a cloud job reaches its tracking
    server: the settings file the job is given names the server for its own profile too."""
    import configparser
    from conftest import mlflow_server
    with mlflow_server(sm_env) as url:
        cfg = configparser.ConfigParser(interpolation=None)
        cfg.read(ROOT/'settings.ini')
        for profile in ('local', 'sagemaker-local'): cfg[profile].update(tracking_uri=url, registry_uri=url)
        with open(sm_env/'settings.ini', 'w') as f: cfg.write(f)
        monkeypatch.setenv('RECSYS_SETTINGS', str(sm_env/'settings.ini'))
        for k in ('TRACKING_URI', 'REGISTRY_URI'): monkeypatch.setenv(f'RECSYS_SAGEMAKER_LOCAL_{k}', url)
        yield url


def test_every_pipeline_notebook_runs_as_a_job_in_the_isolated_environment(server_profile, tmp_path):
    """train, evaluate, batch_inference and monitor, each as the job the cloud would run: the SDK's sm_train.sh (or the
    processing entrypoint) runs job.sh in a Python holding only what job.sh installed, so a missing extra fails here."""
    from recsys_lib.sagemaker.local import job_envs_dir
    train = run_local_job(ROOT/'pipelines'/'train.ipynb', load_settings('sagemaker-local'), {'preset': 'tiny', 'model': 'popularity', 'registered_model': 'sm-all'}, track=True)
    assert train.ok and train.tracked['version'] == 1, (train.reason, train.tracking_error)
    jobs = {'evaluate': ({'registered_model': 'sm-all', 'versions': ['challenger'], 'preset': 'tiny', 'n_boot': 20}, 'training'),
            'batch_inference': ({'registered_model': 'sm-all', 'alias': 'challenger', 'k': 5}, 'processing'),
            'monitor': ({'registered_model': 'sm-all', 'alias': 'challenger', 'preset': 'tiny'}, 'training')}
    results = {name: run_local_job(ROOT/'pipelines'/f'{name}.ipynb', load_settings('sagemaker-local'), params, mode=mode) for name, (params, mode) in jobs.items()}
    failed = {name: (r.reason, (r.run_dir/'job.log').read_text()[-1500:] if r.run_dir else None) for name, r in results.items() if not r.ok}
    assert not failed, failed
    for name, r in {'train': train, **results}.items():   # each ran in the job environment's Python, not this one
        assert f"{job_envs_dir()}/" in (r.run_dir/'job.log').read_text(), name
    assert 'Executing command: bash job.sh training' in (train.run_dir/'job.log').read_text()   # through the SDK's sm_train.sh
    assert 'challenger_ndcg@10' in results['evaluate'].metrics and 'retrain_due' in results['monitor'].metrics
    reco = pd.read_parquet(results['batch_inference'].run_dir/'recommendations')
    assert reco.groupby('user_id').size().eq(5).all()


def test_the_job_environment_holds_what_job_sh_installs_pinned_and_needs_no_index_once_built(sm_env, tmp_path):
    "The cached job environment: the packages job.sh installed at the staged pins, none of this machine's dev tools; a rerun installs offline."
    import os
    from recsys_lib.settings import load_settings
    from recsys_lib.sagemaker.jobcode import build_wheel, stage_code
    from recsys_lib.sagemaker.local import container_environment, job_python
    code = stage_code(ROOT/'pipelines'/'train.ipynb', load_settings('sagemaker-local'), build_wheel(tmp_path/'dist'), tmp_path/'code')
    pins = dict(l.split('==') for l in (code/'constraints.txt').read_text().splitlines() if '==' in l)
    with job_python(code) as env:
        python = str(env/'bin'/'python')
        env_vars = container_environment(env, tmp_path)
        r = subprocess.run([python, '-c', 'import importlib.metadata as m, json; print(json.dumps({d.metadata["Name"].lower().replace("_", "-"): d.version for d in m.distributions()}))'],
                           capture_output=True, text=True, env=env_vars)
        installed = json.loads(r.stdout)
        assert {k: installed.get(k) for k in ('mlflow', 'papermill', 'pandas')} == {k: pins[k] for k in ('mlflow', 'papermill', 'pandas')}
        assert not {'pyspark', 'moto', 'nbdev', 'pytest'} & set(installed), "the job environment holds packages job.sh never installed"
        # a baked image: every package is there, so job.sh installs with no index at all (a VPC without NAT)
        offline = {**env_vars, 'PIP_CONFIG_FILE': os.devnull, 'PIP_NO_INDEX': '1', 'PIP_FIND_LINKS': ''}
        r = subprocess.run(['bash', str(code/'job.sh'), 'install'], capture_output=True, text=True, env=offline, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]


def test_a_value_the_sdk_environment_file_cannot_hold_fails_the_emulated_job_as_it_would_the_real_one(sm_env, tiny_notebook, monkeypatch):
    "Without the check before staging, the SDK's own environment.py and sm_train.sh kill the job before the notebook starts, with no reason."
    from recsys_lib.params import ParamError
    from recsys_lib.sagemaker import local
    params = {'epochs': 1, 'opts': {'scale': 2, 'note': "it's"}, 'flag': True}
    with pytest.raises(ParamError, match="contains a single quote"): run_local_job(tiny_notebook, load_settings('sagemaker-local'), params)
    monkeypatch.setattr(local, 'check_environment_file', lambda *a: None)
    res = run_local_job(tiny_notebook, load_settings('sagemaker-local'), params, keep_root=True)
    # bash stops on the syntax error of the sourced file: exit 2, before sm_train.sh's ERR trap could write a reason
    assert (res.status, res.exit_code, res.run_dir) == ('failed', 2, None), res
    assert res.reason == 'the container exited with status 2 and wrote no failure reason'
    assert "sm_training.env: line" in (res.root/'job.log').read_text() and 'unexpected EOF' in (res.root/'job.log').read_text()


def test_a_job_reading_the_registry_is_refused_without_a_server_it_can_reach(sm_env):
    "evaluate and monitor read registered models inside the job; with a SQLite registry the job would start and find it empty."
    from recsys_lib.core import ConfigError
    for nb in ('evaluate', 'monitor'):
        with pytest.raises(ConfigError, match=rf"{nb}.ipynb reads registered models inside the job, but \[sagemaker-local\] of .*settings.ini "
                                              r"has registry_uri 'sqlite:///.recsys/mlflow.db', a store on this machine the job cannot reach"):
            run_local_job(ROOT/'pipelines'/f'{nb}.ipynb', load_settings('sagemaker-local'), {'registered_model': 'm'})
    assert not (sm_env/'runs').exists()
