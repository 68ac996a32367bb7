"SASRec outside the notebook: reproducible across processes on CPU, and nothing written to the working directory."
import hashlib, subprocess, sys

import pytest

pytest.importorskip('torch')
pytest.importorskip('pytorch_lightning')

SCRIPT = """
import hashlib, numpy as np
from recsys_lib.data import Interactions
from recsys_lib.synthetic import make_synthetic
from recsys_lib.split import leave_last_out
from recsys_lib.sasrec import SASRec
inter = Interactions.from_df(make_synthetic(n_users=80, n_items=50, n_interactions=1200, sequential_strength=0.8, seed=3))
split = leave_last_out(inter, n_test=1, n_valid=1)
m = SASRec(max_len=10, hidden=16, n_heads=2, n_layers=1, batch_size=32, max_epochs=2, seed=7, accelerator='cpu',
           progress_bar=False).fit(split.train, split.valid)
h = hashlib.sha256()
for k, v in sorted(m._state().items()):
    if k.startswith("history."): continue  # the curve holds wall-clock seconds
    h.update(k.encode()); h.update(np.ascontiguousarray(v).tobytes())
print(h.hexdigest())
"""


def _run(cwd, threads):
    env_code = f"import torch; torch.set_num_threads({threads})\n" + SCRIPT
    out = subprocess.run([sys.executable, '-c', env_code], cwd=cwd, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def test_same_seed_same_weights_across_processes(tmp_path):
    a, b = tmp_path/'a', tmp_path/'b'
    a.mkdir(); b.mkdir()
    assert _run(a, 1) == _run(b, 1)
    assert list(a.iterdir()) == [] and list(b.iterdir()) == []  # no lightning_logs or checkpoints in the cwd
