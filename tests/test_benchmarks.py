"The benchmark scripts that take user data run end to end on a small file of the same format."
import subprocess, sys

import numpy as np

from recsys_lib.synthetic import make_synthetic

from conftest import ROOT


def test_recbole_protocol_script_on_a_ratings_dat(tmp_path):
    df = make_synthetic(n_users=300, n_items=200, n_interactions=8_000, seed=0)
    rating = np.random.default_rng(0).integers(1, 6, len(df))
    lines = [f"{u}::{i}::{r}::{int(t.timestamp())}" for u, i, r, t in zip(df.user_id, df.item_id, rating, df.timestamp)]
    (tmp_path/'ratings.dat').write_text('\n'.join(lines) + '\n')
    r = subprocess.run([sys.executable, ROOT/'benchmarks'/'recbole_ml1m.py', tmp_path/'ratings.dat', '--models', 'ease', 'itemknn'],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    table = {l.split()[0]: l.split()[1:] for l in r.stdout.splitlines()[2:]}
    assert set(table) >= {'ease', 'itemknn', 'bpr'}
    assert table['ease'][1] == '0.2865' and 0 < float(table['ease'][0]) < 1
