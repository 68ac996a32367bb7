"""The pipelines with `engine="spark"`: the same notebooks, the data prepared, split, scored and evaluated on
Spark (local[*]), and the same numbers as the local engine on the same data."""
import json, subprocess
from pathlib import Path

import pytest

from conftest import BIN, ROOT


def _run(env, *params, notebook='train.ipynb'):
    args = [str(BIN/'recsys'), 'run', str(ROOT/'pipelines'/notebook), '--no-progress']
    if notebook != 'batch_inference.ipynb': args += ['-p', 'preset', 'tiny']
    for name, value in params: args += ['-p', name, value]
    r = subprocess.run(args, capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    run_dir = next(Path(line) for line in r.stdout.splitlines() if Path(line).is_absolute() and Path(line).is_dir())
    return json.loads((run_dir/'metrics.json').read_text())


def test_spark_engine_gives_the_local_numbers(clean_env):
    local = _run(clean_env, ('model', 'itemknn'), ('registered_model', 'local-run'))
    spark = _run(clean_env, ('model', 'itemknn'), ('engine', 'spark'), ('registered_model', 'spark-run'))
    assert set(spark) == set(local)
    for key in local: assert spark[key] == pytest.approx(local[key], abs=1e-9), key
    # batch inference of the Spark-trained version, scored on Spark, checked by Spark, published
    batch = _run(clean_env, ('registered_model', 'spark-run'), ('alias', 'challenger'), ('engine', 'spark'), ('k', '5'),
                 notebook='batch_inference.ipynb')
    published = Path(clean_env['RECSYS_LOCAL_DATA_DIR'])/'published'/'spark-run'
    manifest = json.loads((published/'_manifest.json').read_text())
    assert batch['rows'] == manifest['rows'] == 300 * 5 and batch['active_user_share'] == 1.0


@pytest.mark.spark_heavy
def test_evaluate_and_monitor_on_spark_give_the_local_numbers(clean_env):
    for model in ('itemknn', 'ease'): _run(clean_env, ('model', model), ('registered_model', 'cmp'))
    versions = ('versions', '[1, 2]'), ('n_boot', '200')
    local, spark = (_run(clean_env, *versions, ('registered_model', 'cmp'), ('engine', e), notebook='evaluate.ipynb')
                    for e in ('local', 'spark'))
    assert set(spark) == set(local) and any(key.startswith('2_ndcg') for key in local)
    for key in local: assert spark[key] == pytest.approx(local[key], abs=1e-9), key
    local, spark = (_run(clean_env, ('registered_model', 'cmp'), ('alias', 'challenger'), ('engine', e), notebook='monitor.ipynb')
                    for e in ('local', 'spark'))
    assert set(spark) == set(local) and 'psi_scores' in local
    for key in local: assert spark[key] == pytest.approx(local[key], abs=1e-6), key


@pytest.mark.spark_heavy
def test_spark_als_trains_on_the_cluster_and_registers_a_local_model(clean_env):
    metrics = _run(clean_env, ('model', 'spark_als'), ('model_params', '{"factors": 16, "iterations": 5, "blocks": 2}'),
                   ('engine', 'spark'), ('registered_model', 'spark-als'))
    assert metrics['test_ndcg@10'] > 0
