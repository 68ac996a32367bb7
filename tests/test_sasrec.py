"SASRec outside the notebook: reproducible across processes on CPU, nothing written to the working directory, no progress bar in batch runs, and one clear error where torch is missing."
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


# --- the progress bar follows who reads the output ---

def _kernel_says(kc, code, allow_stdin):
    "The last line `code` prints in the kernel behind `kc`, sent the way a frontend with or without input sends it."
    out = []
    hook = lambda msg: out.append(msg['content']['text']) if msg['msg_type'] == 'stream' and msg['content']['name'] == 'stdout' else None
    reply = kc.execute_interactive(code, allow_stdin=allow_stdin, output_hook=hook, stdin_hook=lambda msg: None, timeout=300)
    assert reply['content']['status'] == 'ok', reply['content']
    return ''.join(out).strip().splitlines()[-1]


def test_jupyter_kernel_is_interactive_for_a_person_not_for_a_batch_run(monkeypatch):
    "A real ipykernel: a frontend that allows input (JupyterLab, VS Code) is a person; nbclient's allow_stdin=False is not; a run of `recsys run` never is."
    jupyter_client = pytest.importorskip('jupyter_client.manager')
    from recsys_lib.core import RUN_DIR_ENV
    monkeypatch.delenv(RUN_DIR_ENV, raising=False)
    km, kc = jupyter_client.start_new_kernel(kernel_name='python3')
    try:
        ask = "from recsys_lib.sasrec import is_interactive; print(is_interactive())"
        assert _kernel_says(kc, ask, allow_stdin=True) == 'True'
        assert _kernel_says(kc, ask, allow_stdin=False) == 'False'
        in_run = f"import os; os.environ[{RUN_DIR_ENV!r}] = '/runs/r1'; " + ask
        assert _kernel_says(kc, in_run, allow_stdin=True) == 'False'
    finally:
        kc.stop_channels(); km.shutdown_kernel(now=True)


def test_papermill_run_is_not_interactive(tmp_path, monkeypatch):
    "A plain papermill execution (as SageMaker Notebook Jobs run one), outside `recsys run`: no progress bar."
    pm, nbformat = pytest.importorskip('papermill'), pytest.importorskip('nbformat')
    from recsys_lib.core import RUN_DIR_ENV
    monkeypatch.delenv(RUN_DIR_ENV, raising=False)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("from recsys_lib.sasrec import is_interactive; print(is_interactive())")])
    nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}
    nbformat.write(nb, tmp_path/'in.ipynb')
    out = pm.execute_notebook(str(tmp_path/'in.ipynb'), str(tmp_path/'out.ipynb'), kernel_name='python3', progress_bar=False)
    assert out.cells[0].outputs[0]['text'].strip() == 'False'


FIT_DEFAULT = """
from recsys_lib.data import Interactions
from recsys_lib.synthetic import make_synthetic
from recsys_lib.sasrec import SASRec
inter = Interactions.from_df(make_synthetic(n_users=30, n_items=20, n_interactions=300, sequential_strength=0.8, seed=1))
SASRec(max_len=6, hidden=8, n_heads=2, n_layers=1, batch_size=32, max_epochs=1, accelerator='cpu').fit(inter)
print('fitted')
"""


def _script_output(stdout_is_terminal:bool, env:dict)->str:
    "What `FIT_DEFAULT` writes to stdout, with stdout a pseudo-terminal or a pipe (as a redirect to a log file is)."
    if not stdout_is_terminal:
        return subprocess.run([sys.executable, '-c', FIT_DEFAULT], capture_output=True, text=True, check=True, env=env).stdout
    import fcntl, os, pty, struct, termios
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack('HHHH', 24, 100, 0, 0))  # a new pty is 0 columns wide: tqdm would draw nothing
    proc = subprocess.Popen([sys.executable, '-c', FIT_DEFAULT], stdout=secondary, stderr=subprocess.DEVNULL, env=env)
    os.close(secondary)
    chunks = []
    while True:
        try: chunk = os.read(primary, 65536)
        except OSError: break  # Linux: EIO once the child has closed the terminal
        if not chunk: break
        chunks.append(chunk)
    os.close(primary)
    assert proc.wait() == 0
    return b''.join(chunks).decode(errors='replace')


def test_default_progress_bar_in_a_terminal_not_in_a_log():
    "progress_bar=None end to end: Lightning's bar (on stdout) in a terminal; nothing of it when stdout goes to a file."
    import os
    from recsys_lib.core import RUN_DIR_ENV
    env = {k: v for k, v in os.environ.items() if k != RUN_DIR_ENV}
    in_log, in_terminal = _script_output(False, env), _script_output(True, env)
    assert in_log.strip() == 'fitted'
    assert 'Epoch 0' in in_terminal and '\r' in in_terminal and 'fitted' in in_terminal


# --- loading without torch ---

NO_TORCH = '''
import sys
class NoTorch:
    "Refuses torch and Lightning as if they were not installed."
    def find_spec(self, name, path=None, target=None):
        if name.partition('.')[0] in ('torch', 'pytorch_lightning', 'lightning', 'lightning_fabric'):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NoTorch())
'''

LOAD_WITHOUT_TORCH = NO_TORCH + '''
import json, sys
import recsys_lib
from recsys_lib.core import ConfigError
from recsys_lib.models import load_model
folder, users = sys.argv[1], json.loads(sys.argv[2])
out = {name: load_model(f"{folder}/{name}").recommend(users, k=3).item_id.tolist() for name in ('ease', 'popularity')}
try:
    load_model(f"{folder}/sasrec")
    out['sasrec'] = 'loaded'
except ConfigError as e: out['sasrec'] = f"ConfigError: {e}"
out['torch_imported'] = 'torch' in sys.modules
print(json.dumps(out))
'''


def test_sasrec_artifact_without_torch_names_the_extra(tmp_path):
    "Without torch: recsys_lib imports, EASE and Popularity artifacts load and recommend, a SASRec artifact is one ConfigError naming the extra."
    import json
    from recsys_lib.data import Interactions
    from recsys_lib.synthetic import make_synthetic
    from recsys_lib.models import Popularity
    from recsys_lib.ease import EASE
    from recsys_lib.sasrec import SASRec
    inter = Interactions.from_df(make_synthetic(n_users=40, n_items=30, n_interactions=500, sequential_strength=0.8, seed=2))
    models = {'ease': EASE(l2=50), 'popularity': Popularity(),
              'sasrec': SASRec(max_len=6, hidden=8, n_heads=2, n_layers=1, batch_size=32, max_epochs=1, accelerator='cpu', progress_bar=False)}
    for name, m in models.items(): m.fit(inter).save(tmp_path/name)
    users = inter.df.user_id.unique()[:2].tolist()
    res = subprocess.run([sys.executable, '-c', LOAD_WITHOUT_TORCH, str(tmp_path), json.dumps(users)],
                         capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    for name in ('ease', 'popularity'):  # the same lists as the models that were saved
        assert out[name] == models[name].recommend(users, k=3).item_id.tolist()
    assert out['sasrec'] == "ConfigError: model 'sasrec' needs the train extra (torch is missing): pip install 'recsys_lib[train]'"
    assert out['torch_imported'] is False
