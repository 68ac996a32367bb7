"""Lineage between the pipeline steps, through the commands a user runs (`recsys run pipelines/...`, `recsys promote`):
a version trained on a real file records that file, its read options and its frozen split; evaluate, monitor and
batch inference default to that data (no synthetic data is ever generated); evaluation rows a model learnt from are
refused, never scored; the gate refuses a champion trained on another dataset unless told to compare anyway, and
passes a retrain on a newer snapshot of the same file."""
import json, subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import BIN, ROOT

COLUMNS = '{"user": "user_id", "item": "item_id", "ts": "timestamp"}'   # the file's names; 'rating' is the weight
FILE_OPTIONS = ('-p', 'columns', COLUMNS, '-p', 'rating_threshold', '3')


def ratings(n_users=120, n_items=60, per_user=30, seed=0) -> pd.DataFrame:
    "A MovieLens-like rating table: each user prefers one of 6 item groups, rates those 4-5 and the rest 1-3."
    rng = np.random.default_rng(seed)
    user = np.repeat(np.arange(1, n_users + 1) + 500, per_user)
    group = (user % 6)
    liked = rng.random(len(user)) < 0.8
    item = np.where(liked, group * 10 + rng.integers(0, 10, len(user)), rng.integers(0, n_items, len(user))) + 9000
    rating = np.where(liked, rng.integers(4, 6, len(user)), rng.integers(1, 4, len(user)))
    ts = 1_700_000_000 + rng.permutation(len(user)) * 60   # distinct times: event order is random within each user
    df = pd.DataFrame({'user': user, 'item': item, 'rating': rating, 'ts': ts})
    return df.drop_duplicates(['user', 'item']).sort_values('ts', ignore_index=True)


@pytest.fixture
def files(tmp_path):
    "Two monthly exports of one rating log: the newer holds every older row and 15% newer events; and an older one."
    df = ratings()
    paths = {name: tmp_path/f'ratings-{name}.csv' for name in ('old', 'may', 'june')}
    df[df.ts < df.ts.quantile(0.6)].to_csv(paths['old'], index=False)
    df[df.ts < df.ts.quantile(0.85)].to_csv(paths['may'], index=False)
    df.to_csv(paths['june'], index=False)
    return paths


def recsys(*args, env):
    return subprocess.run([str(BIN/'recsys'), *map(str, args)], capture_output=True, text=True, env=env, timeout=600)


def run(env, notebook, *params, code=0):
    "`recsys run pipelines/<notebook>` with -p pairs; its run folder."
    r = recsys('run', ROOT/'pipelines'/notebook, '--no-progress', *params, env=env)
    assert r.returncode == code, r.stderr[-3000:]
    if code: return r
    return next(Path(l) for l in r.stdout.splitlines() if Path(l).is_absolute() and Path(l).is_dir())


def records(run_dir) -> dict: return json.loads((run_dir/'records.json').read_text())


def first_output(run_dir) -> str:
    "The first line the executed notebook printed."
    nb = json.loads((run_dir/f"{run_dir.parent.name}.ipynb").read_text())
    return next(''.join(o['text']) for c in nb['cells'] if c['cell_type'] == 'code'
                for o in c.get('outputs', []) if o.get('name') == 'stdout').splitlines()[0]


def client(env):
    import mlflow
    return mlflow.MlflowClient(tracking_uri=env['RECSYS_LOCAL_TRACKING_URI'], registry_uri=env['RECSYS_LOCAL_REGISTRY_URI'])


def test_a_file_trained_version_records_its_data_and_evaluate_defaults_to_it(files, clean_env, tmp_path):
    train = run(clean_env, 'train.ipynb', '-p', 'data_path', files['may'], *FILE_OPTIONS, '-p', 'model', 'itemknn',
                '-p', 'registered_model', 'ml')
    data = records(train)['training_data']
    kept = pd.read_csv(files['may']).query('rating >= 3')
    assert data['source'] == str(files['may']) and data['format'] == 'csv'
    assert data['read_options'] == {'columns': json.loads(COLUMNS), 'rating_threshold': 3}
    assert (data['rows'], data['users'], data['items']) == (len(kept), kept.user.nunique(), kept.item.nunique())
    assert data['split_protocol'] == 'leave_last_out' and data['split_dir'] == records(train)['split_dir']
    assert first_output(train) == f"training data: {str(files['may'])} ({len(kept):,} rows, {kept.user.nunique():,} users x " \
                                  f"{kept.item.nunique():,} items, fingerprint {data['fingerprint'][:12]}), leave_last_out split {Path(data['split_dir']).name}"
    # the registered version carries it: tags, and the run's MLflow dataset input
    c = client(clean_env)
    mv = c.get_model_version('ml', '1')
    assert mv.tags['recsys.data.source'] == str(files['may']) and mv.tags['recsys.data.fingerprint'] == data['fingerprint']
    assert (mv.tags['recsys.split.protocol'], mv.tags['recsys.split.dir']) == ('leave_last_out', data['split_dir'])
    assert json.loads(mv.tags['recsys.data']) == data
    inp, = c.get_run(mv.run_id).inputs.dataset_inputs
    assert (inp.dataset.name, inp.dataset.digest, json.loads(inp.dataset.source)['uri']) == (files['may'].name, data['fingerprint'][:36], str(files['may']))
    assert [(t.key, t.value) for t in inp.tags] == [('mlflow.data.context', 'training')]
    # no data_path: evaluate scores the version on the holdout it was trained with, read with its options
    ev = run(clean_env, 'evaluate.ipynb', '-p', 'registered_model', 'ml', '-p', 'versions', '[1]', '-p', 'n_boot', '50')
    assert records(ev)['evaluation_data'] == data
    line = first_output(ev)
    assert line.startswith(f"Evaluation data: {files['may']} (") and f"Training data: v1 {files['may']} (" in line
    metrics = json.loads((ev/'metrics.json').read_text())
    assert metrics['1_ndcg@10'] > 0.1                             # the model's own data: it scores, on the right users
    assert not (tmp_path/'data'/'synthetic').exists()             # no synthetic data was generated anywhere
    # another file whose holdout events the model was trained on (last month's export): refused, never scored
    r = run(clean_env, 'evaluate.ipynb', '-p', 'registered_model', 'ml', '-p', 'versions', '[1]', '-p', 'n_boot', '50',
            '-p', 'data_path', files['old'], code=1)
    assert 'holdout rows are among the training rows of v1 (e.g. (' in r.stderr and str(files['old']) in r.stderr
    refused = max((tmp_path/'runs'/'evaluate').iterdir())
    assert not any(k.endswith('ndcg@10') for k in json.loads((refused/'metrics.json').read_text()))
    # scoring on a newer export is normal: its holdout is events the model has not seen, read with the version's options
    newer = run(clean_env, 'evaluate.ipynb', '-p', 'registered_model', 'ml', '-p', 'versions', '[1]', '-p', 'n_boot', '50',
                '-p', 'data_path', files['june'])
    assert records(newer)['evaluation_data']['source'] == str(files['june'])
    assert records(newer)['evaluation_data']['read_options'] == data['read_options']
    assert first_output(newer).startswith(f"Evaluation data: {files['june']} (") and f"Training data: v1 {files['may']} (" in first_output(newer)


def test_promote_refuses_a_synthetic_champion_against_a_file_challenger_unless_told(files, clean_env):
    run(clean_env, 'train.ipynb', '-p', 'preset', 'tiny', '-p', 'model', 'popularity', '-p', 'registered_model', 'mix')
    assert recsys('promote', 'mix', env=clean_env).returncode == 0                       # the first champion
    run(clean_env, 'train.ipynb', '-p', 'data_path', files['may'], *FILE_OPTIONS, '-p', 'model', 'itemknn', '-p', 'registered_model', 'mix')
    r = recsys('promote', 'mix', '--n-boot', '50', env=clean_env)
    assert r.returncode == 2, r.stderr[-2000:]
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith('recsys promote: error: champion v1 learnt from another source, and synthetic data is comparable only with itself')
    assert 'champion v1 trained on synthetic:tiny:seed0 (' in line and f"challenger v2 trained on {files['may']} (" in line
    c = client(clean_env)
    assert {a: int(v) for a, v in c.get_registered_model('mix').aliases.items()} == {'champion': 1, 'challenger': 2}
    # told to compare anyway: the gate runs, and its report names both datasets and what was let through
    r = recsys('promote', 'mix', '--n-boot', '50', '--allow-data-mismatch', env=clean_env)
    assert r.returncode in (0, 1) and 'Promotion gate' in r.stdout, r.stderr[-2000:]
    assert 'champion v1 synthetic:tiny:seed0 (' in r.stdout and f"challenger v2 {files['may']} (" in r.stdout
    assert 'Allowed by allow_data_mismatch: champion v1 learnt from another source' in r.stdout


def test_retraining_on_a_newer_snapshot_promotes_and_every_step_uses_the_registered_data(files, clean_env, tmp_path):
    run(clean_env, 'train.ipynb', '-p', 'data_path', files['may'], *FILE_OPTIONS, '-p', 'model', 'popularity', '-p', 'registered_model', 'snap')
    assert recsys('promote', 'snap', env=clean_env).returncode == 0
    june = run(clean_env, 'train.ipynb', '-p', 'data_path', files['june'], *FILE_OPTIONS, '-p', 'model', 'itemknn', '-p', 'registered_model', 'snap')
    r = recsys('promote', 'snap', '--n-boot', '200', env=clean_env)
    assert r.returncode == 0 and 'Promotion gate: PROMOTE' in r.stdout, r.stdout + r.stderr[-2000:]
    assert f"Evaluation data: {files['june']} (" in r.stdout and 'Allowed' not in r.stdout
    assert f"champion v1 {files['may']} (" in r.stdout and f"challenger v2 {files['june']} (" in r.stdout
    from recsys_lib.pipeline import describe_data
    assert 'Training data: champion v1' in client(clean_env).get_model_version('snap', '2').tags['recsys.report.gate']
    # batch inference and monitor of the new champion: its data, no other
    batch = run(clean_env, 'batch_inference.ipynb', '-p', 'registered_model', 'snap')
    assert records(batch)['model_data'] == records(june)['training_data']
    assert first_output(batch) == f"model: snap champion, trained on {describe_data(records(june)['training_data'])}"
    window = tmp_path/'last-days.csv'   # this week's events, exported like the training file: read with the version's options
    pd.read_csv(files['june']).pipe(lambda d: d[d.ts >= d.ts.quantile(0.9)]).to_csv(window, index=False)
    monitor = run(clean_env, 'monitor.ipynb', '-p', 'registered_model', 'snap', '-p', 'window_path', window)
    assert records(monitor)['reference_data'] == records(june)['training_data']
    assert first_output(monitor) == f"reference: {describe_data(records(june)['training_data'])}; window: {window}"
    assert not (tmp_path/'data'/'synthetic').exists()
