"MLflow tracking and registry against real stores: SQLite + local artifacts by default, a 127.0.0.1 server when slow."
import ast, json, os, shutil, subprocess, sys, textwrap
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT, mlflow_server

mlflow = pytest.importorskip('mlflow')
from mlflow import MlflowClient

from recsys_lib.core import write_json
from recsys_lib.settings import load_settings
from recsys_lib.data import Interactions
from recsys_lib.models import ArtifactError, Popularity
from recsys_lib import registry as R, tracking as T


def make_model(seed=0):
    from recsys_lib.synthetic import make_synthetic
    return Popularity().fit(Interactions.from_df(make_synthetic(n_users=60, n_items=40, n_interactions=600, seed=seed)))


def fake_run(runs:Path, name:str, status='succeeded', model=None, params=None, metrics=None, notebook='20_train'):
    "A run directory as the pipeline runner leaves it."
    d = runs/notebook/name
    write_json(d/'params.json', params if params is not None else {'model': 'popularity', 'k': 10, 'window': None})
    write_json(d/'metrics.json', metrics if metrics is not None else {'ndcg@10': 0.25, 'recall@10': 0.4})
    write_json(d/f'{notebook}.ipynb', {'cells': [], 'metadata': {}, 'nbformat': 4, 'nbformat_minor': 5})
    write_json(d/'manifest.json', {'status': status})
    if model is not None: model.save(d/'model')
    return d


@pytest.fixture
def proj(tmp_path, monkeypatch):
    "A project folder with a copy of the real settings.ini; no MLflow or recsys_lib overrides in the environment."
    p = tmp_path/'proj'
    p.mkdir()
    shutil.copy(ROOT/'settings.ini', p/'settings.ini')
    for k in [k for k in os.environ if k.startswith('RECSYS_') or k in ('MLFLOW_TRACKING_URI', 'MLFLOW_REGISTRY_URI')]:
        monkeypatch.delenv(k)
    monkeypatch.setenv('RECSYS_SETTINGS', str(p/'settings.ini'))
    return p


@pytest.fixture
def settings(proj): return load_settings('local')


@pytest.fixture(scope='session')
def empty_db(tmp_path_factory):
    "An empty, migrated MLflow database: creating one takes seconds, copying it none."
    db = tmp_path_factory.mktemp('template')/'mlflow.db'
    MlflowClient(f'sqlite:///{db}').search_experiments()
    return db


@pytest.fixture
def store(proj, empty_db):
    "The project's embedded store, started from a copy of the empty database."
    (proj/'.recsys').mkdir()
    shutil.copy(empty_db, proj/'.recsys'/'mlflow.db')
    return load_settings('local')


def test_embedded_default_ignores_cwd(proj):
    "A process started in a sub-folder (as a notebook in nbs/) finds settings.ini upwards and writes only there."
    (proj/'nbs').mkdir()
    env = {k: v for k, v in os.environ.items() if k != 'RECSYS_SETTINGS'}
    code = textwrap.dedent(f"""
        import mlflow, sys
        sys.path.insert(0, {str(ROOT/'tests')!r})
        from test_tracking import fake_run, make_model
        from recsys_lib import registry as R, tracking as T
        d = fake_run(__import__('pathlib').Path('{proj}/runs'), 'r1', model=make_model())
        rid = T.log_run(d)
        print(R.register_model('m', rid))
        with T.tracking_context():
            with mlflow.start_run(experiment_id=T.ensure_experiment('fluent')): mlflow.log_text('x', 'a.txt')
        print(R.load_registered_model('m', alias='challenger').name)
    """)
    out = subprocess.run([sys.executable, '-c', code], cwd=proj/'nbs', env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ['1', 'popularity']
    assert os.listdir(proj/'nbs') == []                     # no mlflow.db, mlruns/ or mlartifacts/ where it started
    assert (proj/'.recsys'/'mlflow.db').is_file()
    assert (proj/'.recsys'/'mlartifacts'/'20_train').is_dir() and (proj/'.recsys'/'mlartifacts'/'fluent').is_dir()
    assert 'INFO' not in out.stderr and 'Downloading' not in out.stderr, out.stderr  # MLflow's console noise stays low


def test_mlflow_tracking_uri_wins(proj, settings, tmp_path, monkeypatch):
    other = f"sqlite:///{tmp_path}/other/store.db"
    monkeypatch.setenv('RECSYS_LOCAL_TRACKING_URI', f"sqlite:///{tmp_path}/recsys-env.db")
    monkeypatch.setenv('MLFLOW_TRACKING_URI', other)
    cfg = T.tracking_config()
    assert (cfg.tracking_uri, cfg.registry_uri, cfg.origin) == (other, other, 'environment variable MLFLOW_TRACKING_URI')
    rid = T.log_run(fake_run(proj/'runs', 'r1', model=make_model()))
    assert R.register_model('m', rid) == 1
    c = MlflowClient(other, other)
    assert c.get_run(rid).data.tags['recsys.status'] == 'succeeded'
    assert c.get_registered_model('m').aliases == {'challenger': 1}
    assert not (tmp_path/'recsys-env.db').exists() and not (proj/'.recsys'/'mlflow.db').exists()
    assert c.get_run(rid).info.artifact_uri.startswith(settings.artifact_dir.as_uri())  # a local store: artifacts under artifact_dir
    monkeypatch.delenv('MLFLOW_TRACKING_URI')
    assert T.tracking_config().tracking_uri == f"sqlite:///{tmp_path}/recsys-env.db"
    monkeypatch.delenv('RECSYS_LOCAL_TRACKING_URI')
    assert T.tracking_config().tracking_uri == settings.tracking_uri


def test_configure_leaves_environment_alone(proj, store):
    T.configure()
    try:
        assert mlflow.get_tracking_uri() == store.tracking_uri and mlflow.get_registry_uri() == store.registry_uri
        assert 'MLFLOW_TRACKING_URI' not in os.environ and 'MLFLOW_REGISTRY_URI' not in os.environ
        assert T.tracking_config().origin.startswith('[local] of')
    finally: T._set_global_uris(None, None)


def test_log_run_records_params_metrics_and_artifacts(proj, store):
    params = {'model': 'popularity', 'k': 10, 'window': None, 'grid': [1, 2], **{f'p{i}': i for i in range(150)}}
    metrics = {'ndcg@10': 0.25, 'recall@10': 0.5, 'coverage@10': 0.9, 'train/seconds': 1}
    d = fake_run(proj/'runs', '2026-01-01T0000-ab', model=make_model(), params=params, metrics=metrics)
    rid = T.log_run(d)
    c = T.get_client()
    run = c.get_run(rid)
    assert run.info.status == 'FINISHED' and run.info.run_name == '2026-01-01T0000-ab'
    assert c.get_experiment(run.info.experiment_id).name == '20_train'       # default experiment: the notebook stem
    assert run.info.artifact_uri.startswith((store.artifact_dir/'20_train').as_uri())
    assert len(run.data.params) == len(params)                                # more than one batch of 100
    assert run.data.params['k'] == '10' and run.data.params['window'] == 'null' and run.data.params['grid'] == '[1, 2]'
    assert run.data.metrics == {'ndcg_at_10': 0.25, 'recall_at_10': 0.5, 'coverage_at_10': 0.9, 'train/seconds': 1.0}
    tags = run.data.tags
    assert (tags['recsys.run_id'], tags['recsys.notebook'], tags['recsys.status'], tags['recsys.model']) == \
           ('2026-01-01T0000-ab', '20_train', 'succeeded', 'popularity')
    files = {f.path for top in ('run', 'model') for f in c.list_artifacts(rid, top)}
    assert files == {'run/params.json', 'run/metrics.json', 'run/manifest.json', 'run/20_train.ipynb', 'model/config.json',
                     'model/user_map.json', 'model/item_map.json', 'model/arrays.npz', 'model/manifest.json'}
    dl = Path(mlflow.artifacts.download_artifacts(run_id=rid, artifact_path='run', dst_path=str(proj/'dl'), tracking_uri=store.tracking_uri))
    for f in ('params.json', 'metrics.json', 'manifest.json', '20_train.ipynb'): assert (dl/f).read_bytes() == (d/f).read_bytes()
    assert T.log_run(d) == rid                                                 # a retry returns the first run
    assert len(c.search_runs([run.info.experiment_id])) == 1


def test_log_run_that_breaks_half_way_leaves_no_run(proj, store, monkeypatch):
    d = fake_run(proj/'runs', 'r1', model=make_model())
    def boom(*a, **k): raise OSError('disk full')
    monkeypatch.setattr(MlflowClient, 'log_artifacts', boom)
    with pytest.raises(OSError, match='disk full'): T.log_run(d)
    c = T.get_client()
    assert c.search_runs([c.get_experiment_by_name('20_train').experiment_id]) == []


def test_register_alias_load_round_trip(proj, store):
    model = make_model()
    v1 = R.register_model('pop', T.log_run(fake_run(proj/'runs', 'r1', model=model)))
    assert v1 == 1 and R.get_challenger('pop') == 1 and R.get_champion('pop') is None
    assert R.promote('pop') == 1 and R.get_champion('pop') == 1 and R.get_challenger('pop') is None
    v2 = R.register_model('pop', T.log_run(fake_run(proj/'runs', 'r2', model=make_model(seed=1))))
    assert (R.get_champion('pop'), R.get_challenger('pop')) == (1, 2)
    users = model.user_map_.ids[:20].tolist() + [10_000]                       # one unknown user
    expected = model.recommend(users, k=5)
    for kw in ({}, {'alias': 'champion'}, {'version': 1}):
        pd.testing.assert_frame_equal(R.load_registered_model('pop', **kw).recommend(users, k=5), expected)
    assert not R.load_registered_model('pop', alias='challenger').recommend(users, k=5).equals(expected)
    R.set_version_report('pop', v2, "| metric | champion | challenger |\n|---|---|---|\n| ndcg@10 | 0.25 | 0.24 |\n\n**reject**")
    assert R.get_version_report('pop', v2).endswith('**reject**')
    lv = R.list_versions('pop')
    assert lv[['version', 'aliases', 'status']].values.tolist() == [[2, 'challenger', 'succeeded'], [1, 'champion', 'succeeded']]
    assert {'ndcg_at_10', 'recall_at_10'} <= set(lv.columns) and str(lv.created.dt.tz) == 'UTC'
    R.set_alias('pop', 'champion', 2)                                         # rollback/roll-forward is moving the pointer
    assert R.get_version_by_alias('pop', 'champion') == 2


def test_failed_run_cannot_be_registered(proj, store):
    rid = T.log_run(fake_run(proj/'runs', 'r1', status='failed', model=make_model()))
    c = T.get_client()
    assert c.get_run(rid).info.status == 'FAILED'
    with pytest.raises(R.RegistrationError, match=r"did not succeed .*pipeline status 'failed'.*no version of 'pop' was created"):
        R.register_model('pop', rid)
    assert c.search_registered_models() == []                                # nothing left behind, not even an empty model
    no_model = T.log_run(fake_run(proj/'runs', 'r2'))
    with pytest.raises(R.RegistrationError, match='holds no model under model/'): R.register_model('pop', no_model)


def test_fluent_run_registers_only_after_its_record_is_complete(proj, store):
    "A notebook that logs directly: its run is not registrable until log_run records the outcome."
    d = fake_run(proj/'runs', 'r1', model=make_model())
    with T.tracking_context():
        with mlflow.start_run(experiment_id=T.ensure_experiment('20_train')) as run:
            mlflow.log_metric('loss', 0.5, step=1)
            mlflow.log_artifacts(str(d/'model'), 'model')
    with pytest.raises(R.RegistrationError, match=r"pipeline status None; complete its record with log_run"):
        R.register_model('pop', run.info.run_id)
    assert T.log_run(d, run_id=run.info.run_id) == run.info.run_id
    assert R.register_model('pop', run.info.run_id) == 1


def test_corrupted_or_replaced_artifact_is_refused(proj, store):
    rid = T.log_run(fake_run(proj/'runs', 'r1', model=make_model()))
    R.register_model('pop', rid)
    stored = Path(T.get_client().get_run(rid).info.artifact_uri.removeprefix('file://'))/'model'
    assert stored.is_relative_to(store.artifact_dir)
    original = (stored/'arrays.npz').read_bytes()
    (stored/'arrays.npz').write_bytes(original[:100])
    with pytest.raises(ArtifactError, match='arrays.npz does not match its SHA-256'):
        R.load_registered_model('pop', alias='challenger')
    (stored/'arrays.npz').write_bytes(original)
    make_model(seed=3).save(stored)                                           # a whole, valid, but different model folder
    with pytest.raises(ArtifactError, match='differs from the one registered'):
        R.load_registered_model('pop', version=1)


def test_bad_input_is_refused_with_clear_errors(proj, empty_db):
    d = fake_run(proj/'runs', 'r1', params={'api_key': 'xyz'})
    with pytest.raises(T.DataError, match=r"secret parameter\(s\) api_key"): T.log_run(d)
    write_json(d/'manifest.json', {'status': 'running'})
    with pytest.raises(T.DataError, match="has status 'running'"): T.log_run(d)
    assert not (proj/'.recsys').exists()                                      # refused before touching the store
    (proj/'.recsys').mkdir(); shutil.copy(empty_db, proj/'.recsys'/'mlflow.db')
    with pytest.raises(T.TrackingError, match="no registered model named 'nobody'"): R.get_champion('nobody')
    with pytest.raises(T.TrackingError, match="Run with id=abc not found"): R.register_model('pop', 'abc')


def _module_imports(path:Path, top_level_only:bool):
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import): yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield node.module or ''
            if node.module == 'recsys_lib': yield from (f'recsys_lib.{a.name}' for a in node.names)


def test_only_tracking_imports_mlflow():
    "No other module imports mlflow, nor recsys_lib.tracking or recsys_lib.registry at import time (inside a function is fine)."
    for py in sorted((ROOT/'recsys_lib').glob('*.py')):
        if py.name in ('tracking.py', 'registry.py'): continue
        assert not [m for m in _module_imports(py, False) if m.split('.')[0] == 'mlflow'], f"{py.name} imports mlflow"
        for mod in ('recsys_lib.tracking', 'recsys_lib.registry'):
            assert mod not in _module_imports(py, True), f"{py.name} imports {mod} at import time"


@pytest.mark.slow
def test_tracking_server_works_unchanged(proj, settings, tmp_path, monkeypatch):
    "The same calls against `mlflow server` on 127.0.0.1: artifacts go through the server, not to artifact_dir."
    with mlflow_server(tmp_path) as url:
        monkeypatch.setenv('MLFLOW_TRACKING_URI', url)
        model = make_model()
        rid = T.log_run(fake_run(proj/'runs', 'r1', model=model))
        assert T.get_client().get_run(rid).info.artifact_uri.startswith('mlflow-artifacts:')
        assert R.register_model('pop', rid) == 1 and R.promote('pop') == 1
        users = model.user_map_.ids[:10].tolist()
        pd.testing.assert_frame_equal(R.load_registered_model('pop').recommend(users, k=5), model.recommend(users, k=5))
        assert R.list_versions('pop').aliases.tolist() == ['champion']
        assert not settings.artifact_dir.exists() and any((tmp_path/'server-art').rglob('arrays.npz'))
