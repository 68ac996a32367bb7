"""SASRec across hosts and across restarts, in real processes: two CPU processes standing for two SageMaker hosts
train one model with DDP (gloo) and end with identical weights; a fit stopped after one epoch resumes from its spot
checkpoint and ends where an uninterrupted fit does."""
import json, os, socket, subprocess, sys

import numpy as np
import pytest

pytest.importorskip('torch')
pytest.importorskip('pytorch_lightning')

SCRIPT = """
import json, logging, sys
import torch; torch.set_num_threads(1)
logging.basicConfig(level=logging.WARNING, format='%(name)s: %(message)s')
from recsys_lib.data import Interactions
from recsys_lib.synthetic import make_synthetic, SYNTHETIC_PRESETS
from recsys_lib.split import leave_last_out
from recsys_lib.distributed import is_leader
from recsys_lib.sasrec import SASRec
inter = Interactions.from_df(make_synthetic(**SYNTHETIC_PRESETS['tiny'], sequential_strength=0.8, seed=3))
split = leave_last_out(inter, n_test=1, n_valid=1)
m = SASRec(max_len=10, hidden=16, n_heads=2, n_layers=1, batch_size=64, max_epochs=int(sys.argv[1]), seed=7,
           accelerator='cpu', progress_bar=False).fit(split.train, split.valid)
m.save(sys.argv[2])
print(json.dumps({**m.trainer_config_, 'leader': is_leader(), 'best_epoch': m.best_epoch_}))
"""


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def _start(env, epochs, out, cwd):
    return subprocess.Popen([sys.executable, '-c', SCRIPT, str(epochs), str(out)], env=env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(procs, timeout=180):
    "Wait for every process; kill the others if one fails or hangs, so a broken rank never leaves a waiting peer."
    results = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            assert p.returncode == 0, f"exit {p.returncode}\n{err[-3000:]}"
            results.append((json.loads(out.strip().splitlines()[-1]), err))
    finally:
        for p in procs:
            if p.poll() is None: p.kill(); p.wait()
    return results


def _hosts_env(clean_env, port, host, **more):
    return {**clean_env, 'SM_HOSTS': '["algo-1","algo-2"]', 'SM_CURRENT_HOST': host, 'SM_NUM_GPUS': '0',
            'RECSYS_MASTER_ADDR': '127.0.0.1', 'RECSYS_MASTER_PORT': str(port), **more}


def _arrays(model_dir):
    with np.load(model_dir/'arrays.npz', allow_pickle=False) as z:
        return {k: z[k] for k in z.files if k != 'model.history.seconds'}  # the curve's wall-clock seconds differ


def _fit_on_two_hosts(clean_env, tmp_path, epochs, tag, **more):
    port = _free_port()
    procs = [_start(_hosts_env(clean_env, port, host, **more), epochs, tmp_path/f'{tag}-{host}', tmp_path)
             for host in ('algo-1', 'algo-2')]
    return _finish(procs)


def test_two_hosts_train_one_model(clean_env, tmp_path):
    (c1, _), (c2, _) = _fit_on_two_hosts(clean_env, tmp_path, 1, 'ddp')
    for c in (c1, c2):
        assert (c['num_nodes'], c['world_size'], c['devices'], c['accelerator']) == (2, 2, 1, 'CPUAccelerator')
    assert (c1['leader'], c2['leader']) == (True, False)
    a, b = _arrays(tmp_path/'ddp-algo-1'), _arrays(tmp_path/'ddp-algo-2')
    assert a.keys() == b.keys() and any(k.startswith('model.param.') for k in a)
    for k in a: assert np.array_equal(a[k], b[k]), k
    assert sorted(p.name for p in tmp_path.iterdir()) == ['ddp-algo-1', 'ddp-algo-2']  # nothing else written to the cwd


def test_resume_from_spot_checkpoint(clean_env, tmp_path):
    env = {**clean_env, 'RECSYS_CHECKPOINT_DIR': str(tmp_path/'ckpt')}
    ((first, _),) = _finish([_start(env, 1, tmp_path/'first', tmp_path)])
    assert first['resumed_epochs'] == 0
    (run,) = (tmp_path/'ckpt').glob('sasrec-*')
    assert json.loads((run/'checkpoint.json').read_text())['epochs'] == 1
    ((resumed, err),) = _finish([_start(env, 2, tmp_path/'resumed', tmp_path)])
    assert resumed['resumed_epochs'] == 1 and 'resuming SASRec from' in err and '(1 epochs done)' in err
    assert json.loads((run/'checkpoint.json').read_text())['epochs'] == 2
    # the same two epochs without any checkpoint: the resumed fit ends with exactly these weights
    ((whole, _),) = _finish([_start(clean_env, 2, tmp_path/'whole', tmp_path)])
    assert whole['resumed_epochs'] == 0 and whole['best_epoch'] == resumed['best_epoch']
    a, b = _arrays(tmp_path/'resumed'), _arrays(tmp_path/'whole')
    for k in a: assert np.array_equal(a[k], b[k]), k


@pytest.mark.slow
def test_two_hosts_resume_together(clean_env, tmp_path):
    "Two hosts stopped after one epoch resume together from the leader's checkpoint and match an uninterrupted run."
    ck = {'RECSYS_CHECKPOINT_DIR': str(tmp_path/'ckpt')}
    _fit_on_two_hosts(clean_env, tmp_path, 1, 'one', **ck)
    results = _fit_on_two_hosts(clean_env, tmp_path, 2, 'two', **ck)
    assert [c['resumed_epochs'] for c, _ in results] == [1, 1]
    _fit_on_two_hosts(clean_env, tmp_path, 2, 'whole')
    a, b, w = (_arrays(tmp_path/f'{t}-algo-{i}') for t, i in (('two', 1), ('two', 2), ('whole', 1)))
    for k in w: assert np.array_equal(a[k], w[k]) and np.array_equal(b[k], w[k]), k
