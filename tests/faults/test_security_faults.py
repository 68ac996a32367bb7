"""Security rows of the fault matrix, each tried for real: a secret given to a failing run appears in no file the run
leaves anywhere; the package has no way to unpickle; `make lab` serves on 127.0.0.1 behind a token; and a pipeline
run on the default profile opens no connection beyond 127.0.0.1."""
import os, re, signal, subprocess, time, urllib.error, urllib.request
from pathlib import Path

from conftest import BIN, ROOT
from test_run_faults import one_line_error

SECRET = 'tok-' + 'f00d' * 6   # made at run time, so no file of the repository holds it


def test_secret_of_a_failing_run_lands_in_no_written_file(clean_env, tmp_path):
    from recsys_lib.params import new_notebook
    nb = new_notebook(tmp_path/'leaky.ipynb', "api_key: Secret = None  # token\nregistered_model: str = 'leaky'  # entry",
                      'print("key", api_key)\napi_key',
                      'from recsys_lib.record import log_metrics, log_record\nlog_record("leak", str(api_key))\nlog_metrics({"leak": api_key})',
                      'import logging; logging.getLogger("leaky").warning("key %s", api_key)',
                      'raise ValueError(f"bad key {api_key}")')
    r = subprocess.run([str(BIN/'recsys'), 'run', str(nb), '--no-progress'], env={**clean_env, 'RECSYS_SECRET_API_KEY': SECRET},
                       capture_output=True, text=True, timeout=300)
    line = one_line_error(r, 1)
    assert 'raised ValueError: bad key ***' in line
    assert SECRET not in r.stdout + r.stderr                                          # the log on the terminal
    written = [p for p in tmp_path.rglob('*') if p.is_file()]
    assert any(p.suffix == '.db' for p in written) and any(p.name == 'leaky.ipynb' and 'runs' in p.parts for p in written)
    leaks = [p for p in written if SECRET.encode() in p.read_bytes()]                 # run folder, MLflow db and artifacts
    assert not leaks, f"the secret was written to {leaks}"


def test_package_has_no_way_to_unpickle():
    "Artifacts are arrays, JSON and Parquet; no module imports pickle or lets numpy, torch or yaml construct objects."
    unsafe = re.compile(r'^\s*(import pickle|from pickle|import dill|import cloudpickle)|allow_pickle\s*=\s*True|torch\.load\(|'
                        r'yaml\.(unsafe_)?load\(|yaml\.Loader|joblib\.load', re.M)
    hits = [f"{p.relative_to(ROOT)}: {m.group(0).strip()}" for p in (ROOT/'recsys_lib').rglob('*.py') for m in unsafe.finditer(p.read_text())]
    assert not hits, hits


def _status(url: str, wait_s: float = 30) -> int:
    "HTTP status of GET `url`, retried while the server is still starting to accept connections."
    deadline = time.time() + wait_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as r: return r.status
        except urllib.error.HTTPError as e: return e.code
        except urllib.error.URLError:
            if time.time() > deadline: raise
            time.sleep(0.5)


def test_make_lab_listens_on_loopback_behind_a_token(tmp_path):
    env = {**os.environ, 'BROWSER': 'true', 'JUPYTER_RUNTIME_DIR': str(tmp_path/'runtime'), 'JUPYTER_CONFIG_DIR': str(tmp_path/'config'),
           'JUPYTERLAB_WORKSPACES_DIR': str(tmp_path/'workspaces')}
    lab = subprocess.Popen(['make', '--no-print-directory', 'lab'], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        url, deadline = None, time.time() + 120
        while url is None and time.time() < deadline:
            line = lab.stdout.readline()
            assert line or lab.poll() is None, "make lab exited"
            if m := re.search(r'(http://[^\s/]+:\d+)/\S*\?token=([0-9a-f]+)', line): url, token = m.groups()
        assert url and url.startswith('http://127.0.0.1:'), url
        port = int(url.rsplit(':', 1)[1])
        assert _status(f"{url}/api/contents") == 403                                 # no token, no access
        assert _status(f"{url}/api/contents?token={token}") == 200
        listening = [l.split() for l in Path('/proc/net/tcp').read_text().splitlines()[1:] + Path('/proc/net/tcp6').read_text().splitlines()[1:]]
        local = {l[1] for l in listening if l[3] == '0A' and int(l[1].split(':')[1], 16) == port}   # 0A: LISTEN
        assert local and local <= {f'0100007F:{port:04X}', f'00000000000000000000000001000000:{port:04X}'}, local
    finally:
        os.killpg(lab.pid, signal.SIGTERM)
        lab.wait(30)


SOCKET_GUARD = '''
import socket, os
_connect = socket.socket.connect
def _guarded(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ('127.0.0.1', '::1', 'localhost'):
        with open(os.environ['RECSYS_TEST_CONNECT_LOG'], 'a') as f: f.write(f"{os.getpid()} {address}\\n")
        raise OSError(f"test guard: connection to {address} refused")
    return _connect(self, address)
socket.socket.connect = _guarded
'''


def test_default_profile_run_opens_no_connection_beyond_loopback(clean_env, tmp_path):
    "Every Python process of a run (the runner, the kernel, MLflow) gets a socket guard that logs and refuses non-loopback connects."
    guard = tmp_path/'guard'
    guard.mkdir()
    (guard/'sitecustomize.py').write_text(SOCKET_GUARD)
    log = tmp_path/'connects.log'
    env = {**clean_env, 'PYTHONPATH': str(guard), 'RECSYS_TEST_CONNECT_LOG': str(log)}
    r = subprocess.run([str(BIN/'recsys'), 'run', str(ROOT/'pipelines'/'train.ipynb'), '-p', 'preset', 'tiny', '-p', 'model', 'popularity',
                        '-p', 'registered_model', 'offline', '--no-progress'], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'registered' in r.stdout
    assert not log.exists(), f"connections beyond 127.0.0.1: {log.read_text()}"
