"""Execution faults of a training run through `recsys run`, each injected for real into a copy of
`pipelines/train.ipynb` after it has saved its model: a cell raising, a cell past its timeout, the kernel killed with
SIGKILL (what the out-of-memory killer does), and SIGINT or SIGTERM sent to `recsys run` itself. Every case: non-zero
exit with a one-line reason, the right status in the run record, the executed notebook kept, the kernel gone, and no
model version registered."""
import json, os, signal, subprocess, time

import nbformat
import pytest

from conftest import BIN, ROOT
from test_run_faults import mlflow_client, one_line_error


def _train_with(tmp_path, cell: str):
    "pipelines/train.ipynb with `cell` appended: it runs after the model is saved into the run folder."
    nb = nbformat.read(ROOT/'pipelines'/'train.ipynb', as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(cell))
    path = tmp_path/'train.ipynb'
    nbformat.write(nb, path)
    return path, sum(c.cell_type == 'code' for c in nb.cells) + 1   # + papermill's injected parameters cell


def _start(path, *extra, env, **popen):
    return subprocess.Popen([str(BIN/'recsys'), 'run', str(path), '-p', 'preset', 'tiny', '-p', 'model', 'popularity',
                             '-p', 'registered_model', 'faulty', '--no-progress', *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def _check_recorded(tmp_path, env, status, reason):
    run, = (tmp_path/'runs'/'train').iterdir()
    manifest = json.loads((run/'manifest.json').read_text())
    assert (manifest['status'], manifest['reason']) == (status, reason)
    assert (run/'train.ipynb').is_file() and (run/'model'/'manifest.json').is_file()   # notebook kept; model saved, yet...
    client = mlflow_client(env)
    assert client.search_registered_models() == []                                        # ... never registered
    return manifest


@pytest.mark.parametrize('cell, extra, status, reason', [
    ("raise RuntimeError('disk quota exceeded')", [], 'failed', "cell {n} raised RuntimeError: disk quota exceeded"),
    ("import time; time.sleep(120)", ['--timeout', '3'], 'failed', "cell {n} timed out after 3 s"),
    ("import os; os.kill(os.getpid(), 9)", [], 'failed', "the kernel died during cell {n} (killed by SIGKILL, often the out-of-memory killer)"),
])
def test_failing_cell_fails_the_run_and_registers_nothing(cell, extra, status, reason, clean_env, tmp_path):
    path, n = _train_with(tmp_path, cell)
    p = _start(path, *extra, env=clean_env)
    out, err = p.communicate(timeout=600)
    reason = reason.format(n=n)
    line = one_line_error(subprocess.CompletedProcess(p.args, p.returncode, out, err), 1)
    assert line.startswith(f"recsys run: {status}: {reason}; executed notebook: ")
    _check_recorded(tmp_path, clean_env, status, reason)


@pytest.mark.parametrize('sig, name', [(signal.SIGINT, 'KeyboardInterrupt'), (signal.SIGTERM, 'SIGTERM')])
def test_signal_to_recsys_run_records_interrupted_and_stops_the_kernel(sig, name, clean_env, tmp_path):
    marker = tmp_path/'kernel.pid'
    path, n = _train_with(tmp_path, f"import os, time\nopen({str(marker)!r}, 'w').write(str(os.getpid()))\ntime.sleep(300)")
    # a background shell may start children with SIGINT ignored; give `recsys run` the default handling, as a terminal does
    p = _start(path, env=clean_env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while not (marker.exists() and marker.read_text()):
        assert time.time() < deadline and p.poll() is None, p.communicate()
        time.sleep(0.2)
    kernel = int(marker.read_text())
    p.send_signal(sig)
    out, err = p.communicate(timeout=120)
    reason = f"interrupted ({name}) during cell {n}"
    line = one_line_error(subprocess.CompletedProcess(p.args, p.returncode, out, err), 130)
    assert line.startswith(f"recsys run: interrupted: {reason}; executed notebook: ")
    _check_recorded(tmp_path, clean_env, 'interrupted', reason)
    for _ in range(100):
        if not os.path.exists(f'/proc/{kernel}') or open(f'/proc/{kernel}/stat').read().split(')')[-1].split()[0] == 'Z': break
        time.sleep(0.1)
    else: pytest.fail("the kernel outlived the interrupted run")
