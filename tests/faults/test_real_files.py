"""A user's own interaction files through `recsys run pipelines/train.ipynb`, as they come: a RecBole `.inter` file
named by a path relative to where the command runs, a semicolon CSV whose ids have leading zeros, and a file whose
error message is longer than a one-line reason. Each file is written for real into tmp_path and goes through the
same command a user types; the assertions read what the run recorded (fingerprint, model artifact) back."""
import json, subprocess

import numpy as np
import pandas as pd
import pytest

from conftest import BIN, ROOT


def recsys_run(*params, env, cwd):
    args = [str(BIN/'recsys'), 'run', str(ROOT/'pipelines'/'train.ipynb'), '--no-progress', '--no-track']
    for name, value in params: args += ['-p', name, str(value)]
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def ratings(n_users=60, n_items=40, per_user=12, seed=0) -> pd.DataFrame:
    "A MovieLens-like table: user, item, a 1-5 rating, a unix time."
    rng = np.random.default_rng(seed)
    rows = [(u, i, int(rng.integers(1, 6)), 1_600_000_000 + 60 * k)
            for u in range(1, n_users + 1) for k, i in enumerate(rng.choice(n_items, per_user, replace=False) + 1)]
    return pd.DataFrame(rows, columns=['user', 'item', 'rating', 'ts'])


def run_dir(stdout: str):
    return next(line for line in stdout.splitlines() if line.startswith('/'))


def test_recbole_file_by_relative_path_trains_with_its_ratings(clean_env, tmp_path):
    from recsys_lib.data import read_interactions
    df = ratings()
    (tmp_path/'data').mkdir()
    inter = tmp_path/'data'/'ml.inter'
    inter.write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n" +
                     df.to_csv(sep='\t', header=False, index=False))
    r = recsys_run(('data_path', 'data/ml.inter'), env=clean_env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    manifest = json.loads((tmp_path/run_dir(r.stdout)/'manifest.json').read_text())
    logged = manifest['data_fingerprints']['interactions']
    # the ratings are the weights: the run's data is the file with its ratings, not the file with every weight 1
    assert logged == read_interactions(inter).fingerprint() != read_interactions(inter, weight_column='none').fingerprint()
    assert json.loads((tmp_path/run_dir(r.stdout)/'params.json').read_text())['data_path'] == str(inter)


def test_semicolon_csv_ids_come_back_exactly(clean_env, tmp_path):
    from recsys_lib.models import load_model
    df = ratings(n_users=30).rename(columns={'user': 'user_id', 'item': 'item_id', 'ts': 'timestamp'})
    df['user_id'] = [f"{u:03d}" if u % 2 else str(u) for u in df.user_id]  # '001', '2', '003', '4', ...
    df.loc[df.user_id == '2', 'user_id'] = '7'  # and a '7' next to '007'
    path = tmp_path/'plays.CSV'
    df.to_csv(path, sep=';', index=False)
    r = recsys_run(('data_path', path), ('model', 'itemknn'), env=clean_env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    model = load_model(tmp_path/run_dir(r.stdout)/'model')
    assert sorted(model.user_map_.ids) == sorted(df.user_id.unique()) and {'7', '007'} <= set(model.user_map_.ids)
    assert set(model.item_map_.ids) <= set(df.item_id) and model.item_map_.ids.dtype == 'int64'
    reco = model.recommend(['007', '7'], k=3)
    assert list(reco.user_id.unique()) == ['007', '7']


def test_long_error_reaches_the_user_whole(clean_env, tmp_path):
    path = tmp_path/'ms.csv'
    pd.DataFrame({'user_id': [1, 2], 'item_id': [1, 2], 'timestamp': [1_700_000_000_000, 1_700_000_060_000]}).to_csv(path, index=False)
    r = recsys_run(('data_path', path), env=clean_env, cwd=tmp_path)
    assert r.returncode == 1
    hint = "pass timestamp_unit='ms'"
    summary = r.stderr.strip().splitlines()[-1]
    assert summary.startswith('recsys run: failed: cell') and '…' in summary and hint not in summary
    assert hint in r.stderr  # the whole message, above the summary line
    run = summary.split('executed notebook: ')[1].rsplit('/', 1)[0]
    show = subprocess.run([str(BIN/'recsys'), 'show', run], capture_output=True, text=True, env=clean_env, timeout=120)
    assert show.returncode == 0 and hint in show.stdout


@pytest.mark.parametrize('name, text, expected', [
    ('repeated_header.csv', "user_id,item_id\n1,2\nuser_id,item_id\n3,4\n", "line 3 repeats the header"),
    ('export.xlsx', "user_id,item_id\n1,2\n", "cannot tell the format of export.xlsx; supported: parquet"),
])
def test_bad_files_are_refused_on_one_line(clean_env, tmp_path, name, text, expected):
    (tmp_path/name).write_text(text)
    r = recsys_run(('data_path', name), env=clean_env, cwd=tmp_path)
    assert r.returncode == 1 and expected in r.stderr.strip().splitlines()[-1], r.stderr[-2000:]


ID_CASES = {  # file contents -> the ids read back, exactly
    'leading_zeros.csv': ("user_id,item_id\n007,1\n7,1\n0042,2\n", ['007', '7', '0042']),
    'past_int64.csv': (f"user_id,item_id\n{2**64 - 1},1\n5,2\n", [str(2**64 - 1), '5']),
    'na_is_an_id.csv': ("user_id,item_id\nNA,1\nnull,2\n", ['NA', 'null']),
    'unicode.tsv': ("user_id\titem_id\nJosé\t1\nJose\u0301\t2\n", ['José', 'Jose\u0301']),
    'plain.csv': ("user_id,item_id\n-3,1\n12,2\n", [-3, 12]),
}


@pytest.mark.parametrize('name', list(ID_CASES))
def test_text_ids_come_back_exactly(name, tmp_path):
    from recsys_lib.data import read_interactions
    text, ids = ID_CASES[name]
    (tmp_path/name).write_text(text)
    assert read_interactions(tmp_path/name).df.user_id.tolist() == ids


def test_binary_ids_are_never_wrapped_or_merged(tmp_path):
    from recsys_lib.core import DataError
    from recsys_lib.data import read_interactions
    hashes = np.array([2**64 - 1, 2**63, 5], 'uint64')
    pd.DataFrame({'user_id': hashes, 'item_id': [1, 2, 3]}).to_parquet(tmp_path/'hashes.parquet')
    assert read_interactions(tmp_path/'hashes.parquet').df.user_id.tolist() == [str(h) for h in hashes]
    pd.DataFrame({'user_id': [2.0**53, 2.0**53 + 1], 'item_id': [1, 2]}).to_parquet(tmp_path/'floats.parquet')  # already one value
    with pytest.raises(DataError, match=r"2 ids stored as floats at or above 2\*\*53"): read_interactions(tmp_path/'floats.parquet')
