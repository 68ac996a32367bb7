"""The pipeline notebooks: orchestration only, a typed contract, and the whole flow end to end on tiny synthetic data.

The end-to-end test runs `recsys demo` as a user would (train popularity, promote, train EASE, evaluate, promote
through the gate, batch inference, monitor) against an MLflow store, run folder and data store under tmp_path.
"""
import ast, json, subprocess

import nbformat
import pandas as pd
import pytest

from recsys_lib.params import notebook_params

from conftest import BIN, ROOT

PIPELINES = sorted((ROOT/'pipelines').glob('*.ipynb'))


def test_the_four_pipelines_exist():
    assert {p.stem for p in PIPELINES} == {'train', 'evaluate', 'batch_inference', 'monitor'}


@pytest.mark.parametrize('path', PIPELINES, ids=lambda p: p.stem)
def test_pipeline_defines_no_function_or_class(path):
    "Pipelines orchestrate; every function they call lives in recsys_lib."
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type != 'code': continue
        for node in ast.walk(ast.parse(cell.source)):
            assert not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)), \
                f"{path.name} defines {type(node).__name__} {getattr(node, 'name', '')!r}: move it to nbs/"


@pytest.mark.parametrize('path', PIPELINES, ids=lambda p: p.stem)
def test_pipeline_has_one_typed_documented_parameters_cell(path):
    cells = nbformat.read(path, as_version=4).cells
    assert sum('parameters' in c.metadata.get('tags', []) for c in cells) == 1
    params = notebook_params(path)
    assert params and all(p.kind != 'any' and p.help for p in params.values()), params
    assert all(c.outputs == [] for c in cells if c.cell_type == 'code'), "commit pipelines without outputs"


def recsys(*args, env):
    return subprocess.run([str(BIN/'recsys'), *map(str, args)], capture_output=True, text=True, env=env, timeout=600)


def test_demo_flow_end_to_end(clean_env, tmp_path, monkeypatch):
    r = recsys('demo', '--preset', 'tiny', '--registered-model', 'e2e', env=clean_env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'gate: promoted' in r.stdout
    runs = {p.parent.parent.name for p in (tmp_path/'runs').glob('*/*/manifest.json')}
    assert set(runs) == {'train', 'evaluate', 'batch_inference', 'monitor'}
    for manifest in (tmp_path/'runs').glob('*/*/manifest.json'):
        assert json.loads(manifest.read_text())['status'] == 'succeeded'
    # the trained EASE beats popularity on the frozen holdout, as recorded by the runs themselves
    trains = sorted((tmp_path/'runs'/'train').iterdir())
    ndcg = [json.loads((d/'metrics.json').read_text())['test_ndcg@10'] for d in trains]
    assert ndcg[1] > 1.5 * ndcg[0]
    # the registry: EASE (version 2) is champion, with the gate report stored on it
    for k, v in clean_env.items():
        if k.startswith('RECSYS_'): monkeypatch.setenv(k, v)
    from recsys_lib import tracking
    assert tracking.get_champion('e2e') == 2 and len(tracking.list_versions('e2e')) == 2
    assert 'PROMOTE' in tracking.get_version_report('e2e', 2)
    # a worse challenger fails the gate, which changes no alias
    r = recsys('run', ROOT/'pipelines'/'train.ipynb', '-p', 'preset', 'tiny', '-p', 'model', 'popularity',
               '-p', 'registered_model', 'e2e', '--no-progress', env=clean_env)
    assert r.returncode == 0 and "registered 'e2e' version 3" in r.stdout
    r = recsys('promote', 'e2e', env=clean_env)
    assert r.returncode == 1 and 'KEEP CHAMPION' in r.stdout
    assert tracking.get_champion('e2e') == 2 and tracking.get_challenger('e2e') == 3
    assert 'KEEP CHAMPION' in tracking.get_version_report('e2e', 3)
    # the published output covers every trained user
    published = tmp_path/'data'/'published'/'e2e'
    manifest = json.loads((published/'_manifest.json').read_text())
    reco = pd.read_parquet(published)
    assert len(reco) == manifest['rows'] > 0 and reco.groupby('user_id').size().max() == 10


def test_failed_training_run_registers_nothing(clean_env, tmp_path):
    r = recsys('run', ROOT/'pipelines'/'train.ipynb', '-p', 'preset', 'tiny', '-p', 'model', 'svd',
               '-p', 'registered_model', 'never', '--no-progress', env=clean_env)
    assert r.returncode == 1 and "unknown model 'svd'" in r.stderr.strip().splitlines()[-1]
    import mlflow
    client = mlflow.MlflowClient(tracking_uri=clean_env['RECSYS_LOCAL_TRACKING_URI'], registry_uri=clean_env['RECSYS_LOCAL_REGISTRY_URI'])
    assert client.search_registered_models() == []
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [r.data.tags.get('recsys.status') for r in runs] == ['failed']   # logged, so the failure can be found


def test_bad_parameter_is_refused_before_anything_runs(clean_env, tmp_path):
    r = recsys('run', ROOT/'pipelines'/'train.ipynb', '-p', 'k', 'ten', env=clean_env)
    assert r.returncode == 2 and "'k' (int)" in r.stderr and not (tmp_path/'runs').exists()
