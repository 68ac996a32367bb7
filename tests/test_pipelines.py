"""The pipeline notebooks: orchestration only, a typed contract, and the whole flow end to end on tiny synthetic data.

The end-to-end test runs `recsys demo` as a user would (train popularity, promote, train EASE, evaluate, promote
through the gate, batch inference, monitor) against an MLflow store, run folder and data store under tmp_path.
"""
import ast, json, logging, subprocess

import nbformat
import pandas as pd
import pytest

from recsys_lib.data import DUPLICATE_POLICIES, FILE_FORMATS, TIMESTAMP_UNITS
from recsys_lib.models import MODELS
from recsys_lib.params import ParamError, notebook_params
from recsys_lib.engine import ENGINES
from recsys_lib.pipeline import PROTOCOLS
from recsys_lib.synthetic import SYNTHETIC_PRESETS

from conftest import BIN, ROOT, one_line_error

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


@pytest.mark.parametrize('path', PIPELINES, ids=lambda p: p.stem)
def test_papermill_reads_the_parameters_cell_without_warnings(path, caplog):
    "papermill's line parser (run on every execution) warns on a line with two `=`, e.g. a `>=` in a help text."
    import papermill
    with caplog.at_level(logging.WARNING, logger='papermill'): papermill.inspect_notebook(str(path))
    assert [r.getMessage() for r in caplog.records] == []


# The values each choice parameter of the pipelines may take, from the registry the library checks them against.
# The notebooks spell them out as `Literal[...]` (what `recsys inspect` shows, and what is checked before a run);
# this keeps the two in step when a registry grows.
REGISTRIES = {'model': [*MODELS, 'spark_als'],   # spark_als: SparkALS.name, trained by SparkEngine.fit with engine spark
              'engine': ENGINES, 'split_protocol': PROTOCOLS, 'preset': SYNTHETIC_PRESETS, 'file_format': FILE_FORMATS,
              'timestamp_unit': TIMESTAMP_UNITS, 'duplicates': DUPLICATE_POLICIES}


@pytest.mark.parametrize('path', PIPELINES, ids=lambda p: p.stem)
def test_pipeline_choices_are_the_library_registries(path):
    params = notebook_params(path)
    for name in REGISTRIES.keys() & params.keys():
        assert params[name].choices is not None, f"{path.name}: {name} is {params[name].type}; annotate it Literal[...]"
        missing, extra = set(REGISTRIES[name]) - set(params[name].choices), set(params[name].choices) - set(REGISTRIES[name])
        assert not missing and not extra, f"{path.name}: {name} lacks {sorted(missing)}, offers unknown {sorted(extra)}"
    # batch_recommend's backends ('numpy', 'torch') are the one list without a registry to compare with
    assert {n for n, p in params.items() if p.choices} - REGISTRIES.keys() <= {'backend'}


def test_spark_als_is_the_name_the_spark_engine_trains():
    from recsys_lib.spark.als import SparkALS
    assert SparkALS.name == 'spark_als' and 'spark_als' not in MODELS


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
    from recsys_lib import registry
    assert registry.get_champion('e2e') == 2 and len(registry.list_versions('e2e')) == 2
    assert 'PROMOTE' in registry.get_version_report('e2e', 2)
    # a worse challenger fails the gate, which changes no alias
    r = recsys('run', ROOT/'pipelines'/'train.ipynb', '-p', 'preset', 'tiny', '-p', 'model', 'popularity',
               '-p', 'registered_model', 'e2e', '--no-progress', env=clean_env)
    assert r.returncode == 0 and "registered 'e2e' version 3" in r.stdout
    r = recsys('promote', 'e2e', env=clean_env)
    assert r.returncode == 1 and 'KEEP CHAMPION' in r.stdout
    assert registry.get_champion('e2e') == 2 and registry.get_challenger('e2e') == 3
    assert 'KEEP CHAMPION' in registry.get_version_report('e2e', 3)
    # the published output covers every trained user
    published = tmp_path/'data'/'published'/'e2e'
    manifest = json.loads((published/'_manifest.json').read_text())
    reco = pd.read_parquet(published)
    assert len(reco) == manifest['rows'] > 0 and reco.groupby('user_id').size().max() == 10


def test_failed_training_run_registers_nothing(clean_env, tmp_path):
    r = recsys('run', ROOT/'pipelines'/'train.ipynb', '-p', 'preset', 'tiny', '-p', 'model_params', '{"nope": 1}',
               '-p', 'registered_model', 'never', '--no-progress', env=clean_env)
    assert r.returncode == 1 and "unexpected keyword argument 'nope'" in r.stderr.strip().splitlines()[-1], r.stderr[-2000:]
    import mlflow
    client = mlflow.MlflowClient(tracking_uri=clean_env['RECSYS_LOCAL_TRACKING_URI'], registry_uri=clean_env['RECSYS_LOCAL_REGISTRY_URI'])
    assert client.search_registered_models() == []
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [r.data.tags.get('recsys.status') for r in runs] == ['failed']   # logged, so the failure can be found


def test_bad_parameter_is_refused_before_anything_runs(clean_env, tmp_path):
    r = recsys('run', ROOT/'pipelines'/'train.ipynb', '-p', 'k', 'ten', env=clean_env)
    assert r.returncode == 2 and "'k' (int)" in r.stderr and not (tmp_path/'runs').exists()


@pytest.mark.parametrize('notebook, name, value, closest', [
    ('train', 'engine', 'spak', 'spark'), ('train', 'model', 'eaze', 'ease'), ('evaluate', 'split_protocol', 'randm', 'random'),
    ('monitor', 'duplicates', 'summ', 'sum'), ('batch_inference', 'backend', 'Torch', 'torch')])
def test_value_outside_the_choices_is_refused_before_anything_runs(clean_env, tmp_path, notebook, name, value, closest):
    r = recsys('run', ROOT/'pipelines'/f'{notebook}.ipynb', '-p', name, value, env=clean_env)
    line = one_line_error(r, 2)
    assert f"notebook {notebook}.ipynb: parameter {name!r} (Literal[" in line, line
    assert f"got {value!r}: not one of the choices (did you mean {closest!r}?)" in line, line
    assert not (tmp_path/'runs').exists() and not (tmp_path/'data').exists()


def test_choices_are_checked_for_the_python_api_and_sagemaker_jobs(clean_env, tmp_path, monkeypatch):
    for k, v in clean_env.items():
        if k.startswith('RECSYS_'): monkeypatch.setenv(k, v)
    from recsys_lib.runner import run_notebook
    with pytest.raises(ParamError, match=r"'model' \(Literal\[.*\]\) got 'eaze': not one of the choices \(did you mean 'ease'\?\)"):
        run_notebook(ROOT/'pipelines'/'train.ipynb', {'model': 'eaze'}, progress=False)
    assert not (tmp_path/'runs').exists()
    # a SageMaker job is refused before anything is staged or any AWS call (no credentials are needed to see it)
    r = recsys('run', ROOT/'pipelines'/'train.ipynb', '--profile', 'sagemaker', '-p', 'engine', 'spak', env=clean_env)
    assert "parameter 'engine' (Literal['local', 'spark']) got 'spak'" in one_line_error(r, 2)
