"""Damage to the embedded MLflow store, through the `recsys` command: a truncated `mlflow.db`, a read-only one, a
version that does not exist, and a deleted one while the run store still records versions registered in it. Each
ends in one line naming the file and what to do, with exit code 2, no traceback; nothing is silently recreated."""
import os, shutil, subprocess, tempfile
from pathlib import Path

import pytest

from conftest import BIN, ROOT, isolated_tracking
from test_run_faults import one_line_error, recsys

TRAIN, BATCH = ROOT/'pipelines'/'train.ipynb', ROOT/'pipelines'/'batch_inference.ipynb'


def _env(d: Path) -> dict:
    "The environment of `clean_env` with every store under `d`."
    env = {k: v for k, v in os.environ.items() if not k.startswith('RECSYS_')}
    env.update(RECSYS_SETTINGS=str(ROOT/'settings.ini'), RECSYS_LOCAL_DATA_DIR=str(d/'data'), RECSYS_LOCAL_RUNS_DIR=str(d/'runs'),
               **isolated_tracking(d))
    return env


def run_error(r, runs: Path, before: set) -> str:
    "The one-line error of a `recsys run` on a damaged store: refused before anything ran (exit 2), no new run folder."
    assert set(runs.glob('*/*')) == before, "the run started on a damaged store"
    return one_line_error(r, 2)


def _train(env, model='popularity', name='st', *extra):
    return recsys('run', TRAIN, '-p', 'preset', 'tiny', '-p', 'model', model, '-p', 'registered_model', name, '--no-progress',
                  *extra, env=env)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    "A store with one registered version of 'st', trained once for the module; tests work on copies of its database."
    d = tmp_path_factory.mktemp('trained')
    r = _train(_env(d))
    assert r.returncode == 0, r.stderr[-2000:]
    return d


def _copy(trained: Path, d: Path) -> dict:
    "A copy of the trained store's database under `d` (the artifacts it names stay in `trained`)."
    shutil.copy(trained/'mlflow.db', d/'mlflow.db')
    return _env(d)


def test_truncated_store_is_named_on_one_line(trained, tmp_path):
    env = _copy(trained, tmp_path)
    db = tmp_path/'mlflow.db'
    whole = db.read_bytes()
    db.write_bytes(whole[:len(whole) // 2])
    damage = f"{db} is not a usable SQLite database (truncated or damaged?): restore it from a backup, or move it aside"
    line = one_line_error(recsys('promote', 'st', env=env), 2)
    assert damage in line, line
    for args in (['run', BATCH, '-p', 'registered_model', 'st', '--no-progress'],
                 ['run', TRAIN, '-p', 'preset', 'tiny', '-p', 'model', 'popularity', '-p', 'registered_model', 'st', '--no-progress']):
        before = set((tmp_path/'runs').glob('*/*'))
        r = recsys(*args, env=env)
        line = run_error(r, tmp_path/'runs', before)
        assert str(db) in line and damage in r.stderr, r.stderr[-2000:]   # the summary line may be shortened; the message is whole above it
    assert db.read_bytes() == whole[:len(whole) // 2]   # left as it was for the user to restore


def test_missing_version_names_the_versions(trained, tmp_path):
    env = _copy(trained, tmp_path)
    elsewhere = tmp_path/'cwd'
    elsewhere.mkdir()
    r = subprocess.run([str(BIN/'recsys'), 'promote', 'st', '--version', '99'], env=env, cwd=elsewhere, capture_output=True, text=True, timeout=600)
    line = one_line_error(r, 2)
    assert line == f"recsys promote: error: version 99 of 'st' does not exist in the registry {tmp_path/'mlflow.db'}; its versions: 1", line
    assert not any(elsewhere.iterdir())   # listing the versions opened the configured store, not MLflow's default ./mlflow.db


def _unprivileged() -> list:
    "A command prefix that drops root, who writes read-only files anyway; skips when that is impossible."
    if os.geteuid() != 0: return []
    if not shutil.which('setpriv'): pytest.skip("root writes read-only files, and setpriv is missing to run as nobody")
    return ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups']


def test_read_only_store_reads_and_refuses_the_first_write_on_one_line():
    prefix = _unprivileged()
    d = Path(tempfile.mkdtemp(prefix='recsys-readonly-'))   # outside pytest's folders, which only root may enter
    try:
        env = {**_env(d), 'HOME': str(d/'home')}
        r = _train(env, 'popularity', 'ro')
        assert r.returncode == 0, r.stderr[-2000:]
        (d/'home').mkdir()
        subprocess.run(['chmod', '-R', 'a+rwX', str(d)], check=True)
        db = d/'mlflow.db'
        db.chmod(0o444)
        run = lambda *args: subprocess.run([*prefix, str(BIN/'recsys'), *map(str, args)], env=env, capture_output=True, text=True, timeout=600)
        # the gate reads the store (allowed), then fails at its first write, the report
        line = one_line_error(run('promote', 'ro'), 2)
        assert line.startswith("recsys promote: error: storing the gate report of 'ro' version 1: ") and f"{db} is read-only: make it" in line, line
        # (`recsys run` is not driven as nobody here: its kernel cannot start from a root-owned interpreter)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_deleted_store_is_refused_while_the_run_store_records_versions(tmp_path):
    env = _env(tmp_path)
    assert _train(env).returncode == 0   # v1 registered; its run folder records it
    db = tmp_path/'mlflow.db'
    db.unlink()
    line = one_line_error(recsys('promote', 'st', env=env), 2)
    assert (f"the registry {db} does not exist, but the run store {tmp_path/'runs'} records 1 version(s) registered into it "
            f"(e.g. 'st' v1 from train/") in line and "start a fresh registry explicitly (RECSYS_FRESH_REGISTRY=1" in line, line
    assert not db.exists()   # no new registry started behind the user's back
    before = set((tmp_path/'runs').glob('*/*'))
    line = run_error(_train(env, 'itemknn'), tmp_path/'runs', before)
    assert f"the registry {db} does not exist" in line and not db.exists(), line
    # asked for explicitly, a fresh registry starts at version 1, and stays accepted afterwards
    r = _train({**env, 'RECSYS_FRESH_REGISTRY': '1'}, 'itemknn')
    assert r.returncode == 0 and "registered 'st' version 1" in r.stdout, r.stderr[-2000:]
    r = recsys('promote', 'st', env=env)
    assert r.returncode == 0 and 'PROMOTE' in r.stdout, r.stderr[-2000:]


def test_doctor_finds_what_disagrees_between_the_stores(tmp_path):
    "`recsys doctor` reports each disagreement on one line and exits 1; on healthy stores it exits 0; it changes nothing."
    env = _env(tmp_path)
    assert _train(env).returncode == 0
    r = recsys('doctor', env=env)
    assert r.returncode == 0 and "ok      'st' v1" in r.stdout and r.stdout.strip().endswith('no problems found'), r.stdout + r.stderr[-2000:]
    run, = (tmp_path/'runs'/'train').iterdir()
    stored, = (tmp_path/'mlartifacts').rglob('model/config.json')
    stored.write_text(stored.read_text().replace('"model"', '"model" ', 1))   # one byte more: the checksum no longer matches
    shutil.move(run, tmp_path/'moved')
    r = recsys('doctor', env=env)
    assert r.returncode == 1 and r.stdout.strip().endswith('2 problem(s)'), r.stdout + r.stderr[-2000:]
    assert f"PROBLEM 'st' v1" in r.stdout and 'config.json does not match its SHA-256' in r.stdout
    assert f"its run folder {run} is gone" in r.stdout
    shutil.move(tmp_path/'moved', run)
    (tmp_path/'mlflow.db').write_bytes((tmp_path/'mlflow.db').read_bytes()[:4096])
    r = recsys('doctor', env=env)
    assert r.returncode == 1 and 'PROBLEM stores' in r.stdout and 'is not a usable SQLite database' in r.stdout, r.stdout + r.stderr[-2000:]
