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


def _patched_recsys(tmp_path, patch: str):
    "A `recsys` that runs `patch` in the runner process first (never in the kernel): a fault inside the runner itself."
    driver = tmp_path/'patched_recsys.py'
    driver.write_text(f"import sys\n{patch}\nfrom recsys_lib.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    return [str(BIN/'python'), str(driver)]


FLOOD = "import logging\nflood = logging.getLogger('flood')\nfor i in range({lines}): flood.warning('line %d of a flood', i)"


def test_a_flood_of_output_is_recorded_in_full(clean_env, tmp_path):
    "100k logging lines outrun papermill's 4 s wait for a cell's output: it was taken for --timeout and crashed the runner."
    path, n = _train_with(tmp_path, FLOOD.format(lines=100_000))
    p = _start(path, '--no-track', env=clean_env)
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0 and 'Traceback' not in err, err[-2000:]
    run, = (tmp_path/'runs'/'train').iterdir()
    assert json.loads((run/'manifest.json').read_text())['status'] == 'succeeded'
    last = nbformat.read(run/'train.ipynb', as_version=4).cells[-1]
    assert 'line 99999 of a flood' in ''.join(o.get('text', '') for o in last.outputs)


# A cell that writes 400 separately flushed messages at once, and a runner that takes 20 ms over each message it
# receives: when the cell ends, seconds of its output are still queued, on a fast machine or a slow one alike.
BURST = "import sys\nfor i in range(400): print('burst', i, flush=True)"
SLOW_READER = ("import time, papermill.clientwrap as w\nreceive = w.PapermillNotebookClient.process_message\n"
               "w.PapermillNotebookClient.process_message = lambda self, *a, **k: (time.sleep(0.02), receive(self, *a, **k))[1]\n"
               "import recsys_lib.runner as r; r.OUTPUT_WAIT_S = 1")


def test_output_still_arriving_after_the_wait_is_not_the_users_timeout(clean_env, tmp_path):
    "Waiting 1 s for a cell's last output (papermill waits 4), output still queued ends the run `failed`, named for what it is."
    path, n = _train_with(tmp_path, BURST)
    r = subprocess.run([*_patched_recsys(tmp_path, SLOW_READER), 'run', str(path),
                        '-p', 'preset', 'tiny', '-p', 'model', 'popularity', '-p', 'registered_model', 'faulty', '--no-progress',
                        '--timeout', '600'], env=clean_env, capture_output=True, text=True, timeout=600)
    line = one_line_error(r, 1)
    reason = f"cell {n} ended, but its output was still arriving 1 s later"
    assert line.startswith(f"recsys run: failed: {reason}") and 'timed out' not in line
    run, = (tmp_path/'runs'/'train').iterdir()
    manifest = json.loads((run/'manifest.json').read_text())
    assert manifest['status'] == 'failed' and manifest['reason'].startswith(reason) and manifest['ended_at']
    assert mlflow_client(clean_env).search_registered_models() == []


@pytest.mark.parametrize('patch, reason', [
    # the red team's crash: a bug in the runner's own diagnosis, after the notebook ran
    ("import recsys_lib.runner as r\ndef bug(*a, **k): raise TypeError('unsupported format string passed to NoneType.__format__')\n"
     "r._diagnose = bug", "runner error: TypeError: unsupported format string passed to NoneType.__format__"),
    # papermill's own bookkeeping failing while the kernel runs (a full disk when it saves the notebook, say)
    ("import papermill.engines as e\nreal = e.NotebookExecutionManager.cell_complete\n"
     "def full(self, cell, cell_index=None, **k):\n    if 'the last cell' in cell.source: raise OSError(28, 'No space left on device')\n"
     "    return real(self, cell, cell_index, **k)\ne.NotebookExecutionManager.cell_complete = full",
     "runner error: OSError: [Errno 28] No space left on device (during cell {n})"),
])
def test_an_exception_in_the_runner_still_ends_the_run_recorded(patch, reason, clean_env, tmp_path):
    path, n = _train_with(tmp_path, "print('the last cell')")
    r = subprocess.run([*_patched_recsys(tmp_path, patch), 'run', str(path), '-p', 'preset', 'tiny', '-p', 'model', 'popularity',
                        '-p', 'registered_model', 'faulty', '--no-progress'], env=clean_env, capture_output=True, text=True, timeout=600)
    line, reason = one_line_error(r, 1), reason.format(n=n)
    assert line.startswith(f"recsys run: failed: {reason}"), line
    run, = (tmp_path/'runs'/'train').iterdir()
    manifest = json.loads((run/'manifest.json').read_text())
    assert (manifest['status'], manifest['reason']) == ('failed', reason) and manifest['ended_at']
    assert 'Traceback' in manifest['traceback']                                        # kept for a bug report, not printed
    assert mlflow_client(clean_env).search_registered_models() == []
