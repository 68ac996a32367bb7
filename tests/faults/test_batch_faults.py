"""Batch output under a crash: `batch_recommend` killed with SIGKILL half-way through writing its parts leaves the
published output as it was (the new parts sit in a hidden temporary folder beside it and are never renamed into
place), and running the same scoring again replaces the output with the same rows."""
import json, signal, subprocess, sys, time
from pathlib import Path

import pandas as pd
import pytest

SCORE = '''
import sys
from recsys_lib.inference import batch_recommend
from recsys_lib.models import load_model
batch_recommend(load_model(sys.argv[1]), sys.argv[2], k=10, block_users=200, progress=False)
'''


@pytest.fixture(scope='module')
def model_dir(tmp_path_factory):
    from recsys_lib.data import Interactions
    from recsys_lib.ease import EASE
    from recsys_lib.synthetic import make_synthetic
    d = tmp_path_factory.mktemp('model')
    EASE(l2=200).fit(Interactions.from_df(make_synthetic(n_users=20_000, n_items=1500, n_interactions=200_000, seed=0))).save(d/'ease')
    return d/'ease'


def _score(model_dir, dest):
    return subprocess.Popen([sys.executable, '-c', SCORE, str(model_dir), str(dest)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _rows(dest: Path) -> pd.DataFrame:
    return pd.read_parquet(dest).sort_values(['user_id', 'rank']).reset_index(drop=True)


def test_killed_batch_is_never_published_and_a_rerun_gives_the_same_rows(model_dir, tmp_path):
    dest = tmp_path/'reco'
    p = _score(model_dir, dest); assert p.wait(600) == 0, p.stderr.read()[-2000:]
    published = {f.name: f.read_bytes() for f in dest.iterdir()}
    first = _rows(dest)
    p = _score(model_dir, dest)                                         # the next night's run, killed half-way
    deadline = time.time() + 300
    while not any(len(list(t.glob('*.parquet'))) >= 3 for t in tmp_path.glob('.reco.*.tmp')):
        assert p.poll() is None and time.time() < deadline, "the scoring run ended before it could be killed"
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL); p.wait(60)
    assert {f.name: f.read_bytes() for f in dest.iterdir()} == published   # what readers see is untouched
    assert all(x == dest or x.name.startswith('.reco.') for x in tmp_path.iterdir())   # the debris is hidden
    p = _score(model_dir, dest); assert p.wait(600) == 0, p.stderr.read()[-2000:]
    pd.testing.assert_frame_equal(_rows(dest), first)                   # same parameters, same rows
    manifest = json.loads((dest/'_manifest.json').read_text())
    assert manifest['rows'] == len(first) == 20_000 * 10
