"""Memory guards before the big allocations: EASE's items x items matrix, ItemKNN's similarity blocks and SASRec's
full-catalogue logits are sized before they are allocated, against the memory this process can still take (the
system's, its container's, its address-space limit) and the optional `memory_limit_gib` setting. Each case runs in
a fresh process under a forced limit (`RECSYS_LOCAL_MEMORY_LIMIT_GIB`, or a real `RLIMIT_AS`) and reads the
process's own peak RSS, so nothing large is ever allocated and "refused before allocating" is measured, not
assumed."""
import json, os, subprocess, sys, textwrap

import pytest

from conftest import ROOT

GiB = 2**30

PRELUDE = """
import json, os, resource, sys
import numpy as np, pandas as pd
from recsys_lib.data import Interactions

def status(key):
    for line in open('/proc/self/status'):
        if line.startswith(key): return int(line.split()[1]) * 1024

def catalogue(n_items, n_users=3000, per_user=40, seed=0):
    "Every item seen at least once, plus random interactions."
    rng = np.random.default_rng(seed)
    users = np.concatenate([np.arange(n_items) % n_users, rng.integers(0, n_users, n_users * per_user)])
    items = np.concatenate([np.arange(n_items), rng.integers(0, n_items, n_users * per_user)])
    ts = pd.Timestamp('2024-01-01') + pd.to_timedelta(np.arange(len(users)), unit='s')
    df = pd.DataFrame({'user_id': users, 'item_id': items, 'timestamp': ts}).drop_duplicates(['user_id', 'item_id'])
    return Interactions.from_df(df)

def report(**kw): print('RESULT ' + json.dumps(kw, default=str))

def attempt(fn):
    "Run fn after resetting the peak-RSS mark; report the error (type, message) and how far RSS rose."
    open('/proc/self/clear_refs', 'w').write('5')
    before = status('VmRSS:')
    try: out, error = fn(), None
    except MemoryError as e: out, error = None, [type(e).__name__, str(e)]
    return out, error, status('VmHWM:') - before
"""


def _run(code, limit_gib=None, timeout=300) -> dict:
    "Run PRELUDE + code in a fresh Python with a clean RECSYS_* environment; the dict it reported."
    env = {k: v for k, v in os.environ.items() if not k.startswith('RECSYS_')}
    env['RECSYS_SETTINGS'] = str(ROOT/'settings.ini')
    if limit_gib is not None: env['RECSYS_LOCAL_MEMORY_LIMIT_GIB'] = str(limit_gib)
    r = subprocess.run([sys.executable, '-c', PRELUDE + textwrap.dedent(code)], env=env, capture_output=True, text=True,
                       timeout=timeout, cwd=ROOT)
    lines = [l for l in r.stdout.splitlines() if l.startswith('RESULT ')]
    assert r.returncode == 0 and lines, f"exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return json.loads(lines[-1][len('RESULT '):])


EASE_FIT = """
from recsys_lib.ease import EASE
inter = catalogue(4000)
m, error, peak = attempt(lambda: EASE().fit(inter))
report(error=error, peak=peak, nnz=inter.to_csr().nnz, fitted=m is not None and m.weights_.shape == (4000, 4000))
"""


def test_ease_refuses_a_catalogue_over_the_limit_before_allocating():
    "4,000 items: a 0.06 GiB float32 matrix, about 0.11 GiB at the peak; under 0.05 GiB the fit is refused, RSS barely moves."
    r = _run(EASE_FIT, limit_gib=0.05)
    assert r['error'] is not None, f"EASE fitted under memory_limit_gib=0.05 (peak RSS rose {r['peak'] / GiB:.3f} GiB)"
    kind, msg = r['error']
    assert kind == 'MemoryBudgetError' and '\n' not in msg
    for part in ('EASE', '4,000 items', 'GiB', 'memory_limit_gib = 0.05', 'ItemKNN', 'ALS', 'min_item_interactions='):
        assert part in msg, f"{part!r} missing from: {msg}"
    assert r['peak'] < 0.02 * GiB  # refused before the Gram matrix (0.06 GiB) was built


def test_ease_fits_the_same_catalogue_without_a_limit_and_stays_within_its_estimate():
    from recsys_lib.ease import ease_peak_bytes
    r = _run(EASE_FIT)
    assert r['error'] is None and r['fitted']
    assert r['peak'] <= ease_peak_bytes(4000, r['nnz'], 'float32')  # the estimate the guard uses is an upper bound


def test_ease_under_an_address_space_limit_gets_the_clean_error_instead_of_a_crash():
    "A real limit, as `ulimit -v` or a container sets it: the fit must end in the error, not a segfault in LAPACK."
    r = _run("""
        from recsys_lib.ease import EASE
        inter = catalogue(6000)
        np.linalg.inv(np.eye(64))   # BLAS threads and buffers exist before the limit
        vm = status('VmSize:')
        resource.setrlimit(resource.RLIMIT_AS, (vm + 100 * 2**20, resource.RLIM_INFINITY))
        m, error, peak = attempt(lambda: EASE().fit(inter))
        report(error=error)
    """)
    assert r['error'] is not None and r['error'][0] == 'MemoryBudgetError', r
    assert '6,000 items' in r['error'][1] and 'available under the address-space limit (ulimit -v)' in r['error'][1]


ITEMKNN_FIT = """
import hashlib
from recsys_lib.itemknn import ItemKNN
inter = catalogue(12000)
m, error, peak = attempt(lambda: ItemKNN(neighbors=50).fit(inter))
S = m.similarity_.copy() if m is not None else None
if S is not None: S.sort_indices()  # blocks of another width list a row's entries in another order
digest = None if S is None else hashlib.sha256(S.data.tobytes() + S.indices.tobytes() + S.indptr.tobytes()).hexdigest()
report(error=error, peak=peak, digest=digest)
"""


def test_itemknn_shrinks_its_blocks_to_the_limit_and_gets_the_same_neighbours():
    "Blocks of 1,024 columns of a 12,000-item catalogue take a few hundred MB; under 0.1 GiB the blocks shrink instead."
    free, limited = _run(ITEMKNN_FIT), _run(ITEMKNN_FIT, limit_gib=0.1)
    assert free['error'] is None and limited['error'] is None, limited
    assert limited['digest'] == free['digest']
    assert limited['peak'] < 0.1 * GiB < free['peak'], (limited['peak'] / GiB, free['peak'] / GiB)


def test_itemknn_refuses_when_even_one_column_cannot_fit():
    r = _run(ITEMKNN_FIT, limit_gib=0.005)
    assert r['error'] is not None, "ItemKNN fitted under memory_limit_gib=0.005"
    kind, msg = r['error']
    assert kind == 'MemoryBudgetError' and '\n' not in msg
    for part in ('ItemKNN', '12,000 items', 'neighbors=50', 'memory_limit_gib = 0.005', 'min_item_interactions='):
        assert part in msg, f"{part!r} missing from: {msg}"
    assert r['peak'] < 0.02 * GiB


SASREC_FIT = """
import torch
torch.set_num_threads(1)
from recsys_lib.sasrec import SASRec
inter = catalogue(20000, n_users=400, per_user=30)
def fit(): return SASRec(max_len=20, hidden=16, n_heads=1, n_layers=1, batch_size=256, max_epochs=1, accelerator='cpu',
                         progress_bar=False).fit(inter)
m, error, peak = attempt(fit)
report(error=error, peak=peak, fitted=m is not None)
"""


def test_sasrec_training_refuses_logits_over_the_limit_and_names_batch_size():
    "256 windows x 20 positions x 20,000 items of logits, with their softmax and gradients: well over 0.2 GiB."
    pytest.importorskip('torch'); pytest.importorskip('pytorch_lightning')
    r = _run(SASREC_FIT, limit_gib=0.2)
    assert r['error'] is not None, f"SASRec trained under memory_limit_gib=0.2 (peak RSS rose {r['peak'] / GiB:.2f} GiB)"
    kind, msg = r['error']
    assert kind == 'MemoryBudgetError' and '\n' not in msg
    for part in ('SASRec', '20,000 items', 'batch_size=256', 'max_len=20', 'memory_limit_gib = 0.2'):
        assert part in msg, f"{part!r} missing from: {msg}"
    assert r['peak'] < 0.1 * GiB


def test_sasrec_scoring_refuses_a_block_over_the_limit_and_names_block_users():
    "A fitted model asked to score 4,096 users at once (batch_recommend's default block) under a small limit."
    pytest.importorskip('torch'); pytest.importorskip('pytorch_lightning')
    r = _run("""
        import torch
        torch.set_num_threads(1)
        from recsys_lib.sasrec import SASRec
        inter = catalogue(20000, n_users=100, per_user=10)
        m = SASRec(max_len=20, hidden=16, n_heads=1, n_layers=1, batch_size=64, max_epochs=1, accelerator='cpu',
                   progress_bar=False).fit(inter)
        users = np.arange(100).repeat(41)[:4096]
        os.environ['RECSYS_LOCAL_MEMORY_LIMIT_GIB'] = '0.1'
        big, error, peak = attempt(lambda: m._score_users(users))
        small, small_error, _ = attempt(lambda: m._score_users(users[:64]))
        report(error=error, peak=peak, small_ok=small_error is None and small.shape == (64, 20000))
    """)
    assert r['error'] is not None, "4,096 x 20,000 scores were computed under memory_limit_gib=0.1"
    kind, msg = r['error']
    assert kind == 'MemoryBudgetError' and 'block_users' in msg and '4,096 users' in msg, msg
    assert r['small_ok']
