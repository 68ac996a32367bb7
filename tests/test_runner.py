"Pipeline notebooks run end to end with papermill on the real `python3` kernel: contract, record, status, secrets, CLI."
import contextlib, io, json, os, signal, subprocess, sys, textwrap, time
from pathlib import Path

import nbformat
import pytest

from recsys_lib.core import RecsysError
from recsys_lib.params import ParamError, new_notebook
from recsys_lib.cli import build_parser
from recsys_lib.runner import RunInterrupted, run_notebook
from recsys_lib.runs import list_runs, load_run

from conftest import BIN, ROOT

TRAIN_PARAMS = textwrap.dedent('''\
    data_path: str = None            # required: input file
    epochs: int = 2                  # passes
    lr: float = 0.1                  # learning rate
    use_gpu: bool = False            # CUDA
    models: list = ["ease"]          # models
    model_args: dict = {}            # per-model args
    run_name: str | None = "default" # optional label''')

CHECK_TYPES = textwrap.dedent('''\
    import os
    assert type(epochs) is int and type(lr) is float and type(use_gpu) is bool, (epochs, lr, use_gpu)
    assert type(models) is list and type(model_args) is dict, (models, model_args)
    from recsys_lib.record import log_metrics, log_data_fingerprint, log_record
    log_data_fingerprint('f' * 64, 'interactions')
    log_record('cwd', os.getcwd())
    log_record('env', {k: os.environ.get(k) for k in ('RECSYS_RUN_DIR', 'RECSYS_PROFILE', 'RECSYS_SETTINGS')})
    log_metrics({'ndcg@10': 0.25, 'epochs_seen': epochs, 'run_name': run_name})''')


def alive(pid) -> bool:
    "Whether process `pid` exists and is not a zombie."
    try: return Path(f'/proc/{pid}/stat').read_text().split(')')[-1].split()[0] != 'Z'
    except OSError: return False


def cli(*argv):
    "Run a subcommand through the `recsys` parser, as `recsys` would: (exit code, stdout, stderr)."
    p = build_parser()
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try: code = (a := p.parse_args([str(x) for x in argv])).func(a)
        except SystemExit as e: code = e.code
        except RecsysError as e: code = 2; print(f"recsys {a.command}: error: {e}", file=sys.stderr)
    return code, out.getvalue(), err.getvalue()


def code_cells(nb): return [c for c in nb.cells if c.cell_type == 'code']


def test_run_records_typed_params_metrics_and_manifest(env):
    nb = new_notebook(env/'nbs'/'train.ipynb', TRAIN_PARAMS, CHECK_TYPES)
    # strings, as a job system sends them
    r = run_notebook(nb, {'data_path': 'x.parquet', 'epochs': '3', 'lr': '1e-2', 'use_gpu': 'TRUE',
                          'models': '[ease, als]', 'model_args': '{"ease": {"l2": 10}}', 'run_name': 'null'}, progress=False)
    assert (r.status, r.reason) == ('succeeded', None)
    assert r.run_dir.parent == env/'runs'/'train'                      # runs_dir of the settings
    assert r.metrics == {'ndcg@10': 0.25, 'epochs_seen': 3, 'run_name': None}
    assert json.loads((r.run_dir/'params.json').read_text()) == {  # a relative path is the caller's: recorded absolute
        'data_path': str(Path.cwd().resolve()/'x.parquet'), 'epochs': 3, 'lr': 0.01, 'use_gpu': True, 'models': ['ease', 'als'],
        'model_args': {'ease': {'l2': 10}}, 'run_name': None}
    m = json.loads((r.run_dir/'manifest.json').read_text())
    assert m['status'] == 'succeeded' and m['reason'] is None and m['failed_cell'] is None
    assert r.run_dir.name.endswith('-' + m['params_hash']) and len(m['params_hash']) == 8
    assert m['data_fingerprints'] == {'interactions': 'f' * 64}
    assert m['records']['cwd'] == str(nb.parent)                      # the kernel runs beside the notebook
    assert m['records']['env'] == {'RECSYS_RUN_DIR': str(r.run_dir), 'RECSYS_PROFILE': 'local',
                                   'RECSYS_SETTINGS': str(ROOT/'settings.ini')}
    assert {'recsys_lib', 'python', 'numpy', 'pandas', 'papermill'} <= set(m['versions'])
    assert m['kernel_python'].split('.')[:2] == [str(sys.version_info.major), str(sys.version_info.minor)]
    assert m['started_at'] < m['ended_at'] and m['duration_s'] > 0
    assert [c['status'] for c in m['cells']] == ['completed'] * 4 and [c['injected'] for c in m['cells']] == [False, False, True, False]
    assert all(c['duration_s'] >= 0 for c in m['cells'])
    executed = nbformat.read(r.notebook, as_version=4)
    assert executed.metadata.papermill.exception is None
    # same parameters, same hash; the second run gets its own folder
    r2 = run_notebook(nb, json.loads((r.run_dir/'params.json').read_text()), progress=False)
    assert r2.run_dir != r.run_dir and r2.run_dir.name.split('-', 1)[1].startswith(m['params_hash'])


def test_git_state_of_the_checkout(env):
    subprocess.run(['git', 'init', '-q', str(env/'repo')], check=True)
    nb = new_notebook(env/'repo'/'p.ipynb', 'n: int = 1', 'n')
    for args in (['add', '.'], ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qm', 'x']):
        subprocess.run(['git', '-C', str(env/'repo'), *args], check=True)
    m = json.loads((run_notebook(nb, progress=False).run_dir/'manifest.json').read_text())
    assert len(m['git']['commit']) == 40 and m['git']['dirty'] is False
    (env/'repo'/'new.py').write_text('x = 1\n')
    m = json.loads((run_notebook(nb, progress=False).run_dir/'manifest.json').read_text())
    assert m['git']['dirty'] is True


@pytest.mark.parametrize('values, message', [
    ({'data_path': 'x', 'epoch': 3}, "unknown parameter 'epoch' (did you mean 'epochs', int?)"),
    ({'data_path': 'x', 'epochs': 'three'}, "parameter 'epochs' (int) got 'three': not an integer"),
    ({'data_path': 'x', 'use_gpu': 'maybe'}, "parameter 'use_gpu' (bool) got 'maybe'"),
    ({'epochs': 3}, "required parameter 'data_path' (str) is missing"),
])
def test_bad_params_fail_before_anything_runs(env, values, message):
    nb = new_notebook(env/'train.ipynb', TRAIN_PARAMS, 'open("ran", "w").close()')
    with pytest.raises(ParamError) as e: run_notebook(nb, values, progress=False)
    assert message in str(e.value) and 'notebook train.ipynb' in str(e.value)
    assert not (env/'runs').exists() and not (env/'ran').exists()
    code, out, err = cli('run', nb, *sum((['-p', k, str(v)] for k, v in values.items()), []))
    assert code == 2 and message in err.strip().splitlines()[-1]
    assert not (env/'runs').exists()


def test_cell_error_is_a_failed_run_with_the_cell_marked(env):
    nb = new_notebook(env/'bad.ipynb', 'd: int = 0  # divisor', 'x = 1', 'x / d', 'print("after")')
    r = run_notebook(nb, {'d': '0'}, progress=False)
    assert (r.status, r.reason) == ('failed', 'cell 5 raised ZeroDivisionError: division by zero')
    executed = nbformat.read(r.notebook, as_version=4)
    assert executed.metadata.papermill.exception is True
    assert [c.metadata.papermill.status for c in code_cells(executed)] == ['completed'] * 4 + ['failed', 'pending']
    assert code_cells(executed)[4].outputs[-1].ename == 'ZeroDivisionError'
    m = json.loads((r.run_dir/'manifest.json').read_text())
    assert m['failed_cell'] == {'cell': 5, 'execution_count': 5, 'source': 'x / d'} and m['reason'] == r.reason


def test_cell_timeout_is_a_failed_run_though_papermill_saves_it_as_complete(env):
    nb = new_notebook(env/'slow.ipynb', 'n: int = 1', 'import time', 'time.sleep(60)', 'print("never")')
    t0 = time.perf_counter()
    r = run_notebook(nb, timeout=2, progress=False)
    assert time.perf_counter() - t0 < 30
    assert (r.status, r.reason) == ('failed', 'cell 4 timed out after 2 s')
    executed = nbformat.read(r.notebook, as_version=4)
    assert executed.metadata.papermill.exception is True
    cells = code_cells(executed)
    assert [c.metadata.papermill.status for c in cells] == ['completed'] * 3 + ['failed', 'pending']
    assert cells[3].outputs[-1].ename == 'CellTimeoutError'
    assert any('papermill-error-cell-tag' in c.metadata.get('tags', []) for c in executed.cells)
    assert load_run(r.run_dir)['manifest']['failed_cell']['source'] == 'time.sleep(60)'


def test_dead_kernel_is_a_failed_run(env):
    nb = new_notebook(env/'oom.ipynb', 'n: int = 1', 'import os', 'os.kill(os.getpid(), 9)', 'print("never")')
    r = run_notebook(nb, progress=False)
    assert r.status == 'failed'
    assert r.reason == 'the kernel died during cell 4 (killed by SIGKILL, often the out-of-memory killer)'
    m = json.loads((r.run_dir/'manifest.json').read_text())
    assert m['kernel_exit_code'] == -9 and m['failed_cell']['cell'] == 4
    assert [c.metadata.papermill.status for c in code_cells(nbformat.read(r.notebook, as_version=4))][3:] == ['failed', 'pending']


def test_secrets_never_reach_the_notebook_params_or_logs(env, monkeypatch):
    monkeypatch.setenv('RECSYS_LOCAL_SECRET_PARAMS', 'db_password')     # a secret by settings, not by annotation
    nb = new_notebook(env/'sec.ipynb', 'api_key: Secret = None  # token\ndb_password: str = None  # password\nuser: str = "me"',
                      'assert isinstance(api_key, Secret) and api_key[::-1] == "1-TERCES-kot"',   # the notebook holds no plain copy
                      'assert db_password[::-1] == "2-TERCES-wp"',
                      'print(api_key, db_password)\napi_key',
                      'from recsys_lib.record import log_metrics, log_record\n'
                      'log_record("leak", db_password)\nlog_metrics({"leak": api_key})\nraise ValueError(api_key)')
    monkeypatch.setenv('RECSYS_SECRET_DB_PASSWORD', 'pw-SECRET-2')      # how a scheduler hands a secret over
    r = run_notebook(nb, {'api_key': 'tok-SECRET-1'}, progress=False)
    assert r.status == 'failed' and r.reason == 'cell 7 raised ValueError: ***'
    files = sorted(p.name for p in r.run_dir.iterdir())
    assert files == ['kernel.log', 'manifest.json', 'metrics.json', 'params.json', 'records.json', 'sec.ipynb', 'source.ipynb']
    for f in r.run_dir.iterdir():
        text = f.read_text()
        assert 'SECRET' not in text, f"a secret leaked into {f.name}"
    executed = nbformat.read(r.notebook, as_version=4)
    assert executed.metadata.papermill.parameters == {'api_key': '***', 'db_password': '***'}
    assert json.loads((r.run_dir/'params.json').read_text()) == {'api_key': '***', 'db_password': '***', 'user': 'me'}
    assert code_cells(executed)[5].outputs[0].text == '*** ***\n'                  # printed, then scrubbed
    assert code_cells(executed)[5].outputs[1].data['text/plain'] == "Secret('***')"  # masked repr
    assert [c.metadata.papermill.status for c in code_cells(executed)] == ['completed'] * 6 + ['failed']


def test_interrupt_stops_the_kernel_and_records_interrupted(env, tmp_path):
    marker = tmp_path/'kernel.pid'
    nb = new_notebook(tmp_path/'long.ipynb', 'n: int = 1',
                      f'import os, time\nopen({str(marker)!r}, "w").write(str(os.getpid()))\ntime.sleep(120)')
    script = ("import sys\nfrom recsys_lib.cli import build_parser\n"
              "p = build_parser()\n"
              "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))")
    # a background shell may hand its children SIGINT ignored; give the runner the default handling, as a terminal would
    proc = subprocess.Popen([sys.executable, '-c', script, 'run', str(nb), '--no-progress'], env=os.environ.copy(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 60
    while not marker.exists() or not marker.read_text():
        assert time.time() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    kernel_pid = int(marker.read_text())
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith('recsys run: interrupted: interrupted (KeyboardInterrupt) during cell 3;')
    for _ in range(100):
        if not alive(kernel_pid): break
        time.sleep(0.1)
    assert not alive(kernel_pid), "the kernel outlived the interrupted run"
    run = load_run(list_runs().run_id[0])
    assert (run['status'], run['reason']) == ('interrupted', 'interrupted (KeyboardInterrupt) during cell 3')
    executed = nbformat.read(run['notebook'], as_version=4)
    assert code_cells(executed)[2].metadata.papermill.status == 'interrupted'


def test_interrupt_in_process_raises_after_recording(env, monkeypatch):
    "run_notebook records the run, then re-raises Ctrl-C as RunInterrupted (a KeyboardInterrupt) carrying the result."
    import papermill
    def interrupted(*a, **k): raise KeyboardInterrupt
    monkeypatch.setattr(papermill, 'execute_notebook', interrupted)
    nb = new_notebook(env/'p.ipynb', 'n: int = 1', 'n')
    with pytest.raises(KeyboardInterrupt) as e: run_notebook(nb, progress=False)
    assert isinstance(e.value, RunInterrupted)
    assert (e.value.result.status, e.value.result.reason) == ('interrupted', 'interrupted before the notebook started')
    assert load_run(e.value.result.run_dir)['status'] == 'interrupted'


def test_cli_run_runs_show_inspect(env):
    nb = new_notebook(env/'train.ipynb', TRAIN_PARAMS, CHECK_TYPES)
    (env/'params.yaml').write_text('data_path: in.parquet\nepochs: 5\nmodels: [ease, als]\n')
    code, out, err = cli('run', nb, '-f', env/'params.yaml', '-p', 'epochs', '7', '-p', 'run_name=a=b', '--no-progress')
    assert code == 0, err
    assert out.splitlines()[0].endswith('succeeded: epochs_seen=7, ndcg@10=0.25, run_name=a=b')
    assert load_run(out.splitlines()[1])['params']['epochs'] == 7
    bad = new_notebook(env/'bad.ipynb', 'd: int = 0', '1 / d')
    code, out, err = cli('run', bad, '--no-progress')
    assert code == 1
    assert err.strip().splitlines()[-1].startswith('recsys run: failed: cell 3 raised ZeroDivisionError: division by zero; executed notebook: ')
    code, out, err = cli('runs')   # the newest run is the failed one: the older run still shows its own metric
    assert code == 0 and [l.split()[0] for l in out.splitlines()] == ['notebook', 'bad', 'train']
    assert out.splitlines()[1].split()[2:] == 'failed cell 3 raised ZeroDivisionError: division by zero'.split()
    assert out.splitlines()[2].split()[2:] == ['succeeded', 'ndcg@10=0.25']
    assert list(list_runs().status) == ['failed', 'succeeded']
    code, out, err = cli('show', 'nope')
    assert code == 2 and "no run 'nope' under" in err
    code, out, err = cli('show', list_runs().run_id[0])
    assert code == 0 and 'status    failed: cell 3 raised ZeroDivisionError' in out
    code, out, err = cli('inspect', nb)
    assert code == 0 and out.splitlines()[0].split() == ['name', 'type', 'default', 'required', 'secret', 'help']
    assert 'data_path' in out and 'yes' in out.splitlines()[1]


def test_runner_and_params_import_light():
    code = ("import sys, recsys_lib.runner, recsys_lib.params; "
            "print([m for m in ('papermill', 'nbformat', 'nbclient', 'jupyter_client', 'yaml', 'torch', 'mlflow') if m in sys.modules])")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == '[]', out


def test_console_script_when_wired(clean_env, tmp_path):
    "Once `recsys_lib.cli` registers the runner's subcommands, the console script gives the same exit codes."
    from recsys_lib.cli import build_parser
    if 'run' not in build_parser()._subparsers._group_actions[0].choices: pytest.skip("runner subcommands not wired into recsys yet")
    ok = new_notebook(tmp_path/'ok.ipynb', 'n: int = 1', 'assert n == 3')
    bad = new_notebook(tmp_path/'bad.ipynb', 'n: int = 1', '1 / 0')
    run = lambda *a: subprocess.run([str(BIN/'recsys'), *map(str, a)], capture_output=True, text=True, env=clean_env, timeout=300)
    assert run('run', ok, '-p', 'n', '3', '--no-progress').returncode == 0
    r = run('run', bad, '--no-progress')
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1].startswith('recsys run: failed: cell 3 raised ZeroDivisionError')
    r = run('run', ok, '-p', 'm', '3')
    assert r.returncode == 2 and "unknown parameter 'm'" in r.stderr.strip().splitlines()[-1]
    assert run('runs').returncode == 0
