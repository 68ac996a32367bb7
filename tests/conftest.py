"Shared fixtures for the integration tests: the project root and the venv's console scripts."
import contextlib, os, socket, subprocess, sys, time, urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# The AWS Price List API is the one AWS service the cost estimates would reach with real credentials on the machine: its
# endpoint points at a closed port on this host instead, so the estimate falls back to the settings table at once.
NO_PRICING_API = 'http://127.0.0.1:9'


@pytest.fixture
def root(): return ROOT


@pytest.fixture
def clean_env(tmp_path):
    "Environment for subprocesses: no inherited RECSYS_* overrides, stores under tmp_path."
    env = {k: v for k, v in os.environ.items() if not k.startswith('RECSYS_')}
    env['RECSYS_SETTINGS'] = str(ROOT/'settings.ini')
    env['AWS_ENDPOINT_URL_PRICING'] = NO_PRICING_API
    env['RECSYS_LOCAL_DATA_DIR'] = str(tmp_path/'data')
    env['RECSYS_LOCAL_RUNS_DIR'] = str(tmp_path/'runs')
    env.update(isolated_tracking(tmp_path))
    return env


@pytest.fixture
def env(tmp_path, monkeypatch):
    "This process's settings (for in-process commands): the project's file, runs under tmp_path, no inherited overrides or secrets."
    for k in list(os.environ):
        if k.startswith('RECSYS_'): monkeypatch.delenv(k)
    monkeypatch.setenv('RECSYS_SETTINGS', str(ROOT/'settings.ini'))
    monkeypatch.setenv('AWS_ENDPOINT_URL_PRICING', NO_PRICING_API)
    monkeypatch.setenv('RECSYS_LOCAL_RUNS_DIR', str(tmp_path/'runs'))
    for k, v in isolated_tracking(tmp_path).items(): monkeypatch.setenv(k, v)
    return tmp_path


def isolated_tracking(tmp_path) -> dict:
    "Settings overrides that keep MLflow's store and artifacts under tmp_path."
    db = f"sqlite:///{tmp_path/'mlflow.db'}"
    return {'RECSYS_LOCAL_TRACKING_URI': db, 'RECSYS_LOCAL_REGISTRY_URI': db,
            'RECSYS_LOCAL_ARTIFACT_DIR': str(tmp_path/'mlartifacts')}


def one_line_error(r, code: int) -> str:
    "The exit code is `code`, no traceback, and one `recsys ...:` line gives the reason (after the run's INFO log lines)."
    assert r.returncode == code, (r.returncode, r.stderr[-2000:])
    assert 'Traceback' not in r.stderr, r.stderr[-2000:]
    reasons = [l for l in r.stderr.strip().splitlines() if l.startswith('recsys ')]
    assert len(reasons) == 1 and r.stderr.strip().endswith(reasons[0]), r.stderr[-2000:]
    return reasons[0]


@contextlib.contextmanager
def mlflow_server(folder: Path):
    "`mlflow server` on 127.0.0.1 with its store and artifacts in `folder`; yields its URL and stops it afterwards."
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(BIN/'mlflow'), 'server', '--host', '127.0.0.1', '--port', str(port), '--workers', '1',
                               '--backend-store-uri', f'sqlite:///{folder}/server.db', '--artifacts-destination', str(folder/'server-art')],
                              cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f'http://127.0.0.1:{port}'
        for _ in range(120):
            try:
                if urllib.request.urlopen(f'{url}/health', timeout=1).status == 200: break
            except OSError: time.sleep(0.5)
        else: pytest.fail('mlflow server did not start within 60 s')
        yield url
    finally:
        os.killpg(server.pid, 15)
        server.wait(30)


@pytest.fixture(scope='session')
def spark():
    "One local Spark session for the whole test run: starting a JVM costs seconds, so every Spark test shares it."
    import warnings
    from recsys_lib.spark.session import spark_session
    warnings.filterwarnings('ignore', message='PySpark does not yet fully support pandas')
    return spark_session()


@pytest.fixture(scope='module')
def tiny():
    "The `tiny` synthetic preset (seed 0) as a raw interactions frame, fresh per test module."
    from recsys_lib.synthetic import SYNTHETIC_PRESETS, make_synthetic
    return make_synthetic(**SYNTHETIC_PRESETS['tiny'], seed=0)


@pytest.fixture(scope='module')
def inter(tiny):
    "The `tiny` preset as `Interactions`, fresh per test module."
    from recsys_lib.data import Interactions
    return Interactions.from_df(tiny)


@pytest.fixture
def offline_prices(monkeypatch):
    "Prices without the AWS Price List API: an injected pricing client answers, else the settings table (as without credentials)."
    pytest.importorskip('botocore')
    from botocore.exceptions import NoCredentialsError
    from recsys_lib.sagemaker import cost
    cost.clear_price_cache()
    real, offline = cost.pricing_client, cost.FakePricing(error=NoCredentialsError())
    monkeypatch.setattr(cost, 'pricing_client', lambda clients=None: real(clients)
                        if hasattr(clients, 'get_products') or getattr(clients, 'pricing', None) is not None else offline)
    yield
    cost.clear_price_cache()


def sagemaker_profiles_env(tmp_path, monkeypatch, bucket: str, region: str, **extra) -> None:
    "The sagemaker and sagemaker-local profiles with their stores under tmp_path and moto's credentials; no inherited RECSYS_ or AWS_ variable."
    import tempfile
    from recsys_lib.sagemaker import cloud
    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path))
    for k in [k for k in os.environ if k.startswith(('RECSYS_', 'AWS_'))]: monkeypatch.delenv(k)
    env = {'RECSYS_SETTINGS': str(ROOT/'settings.ini'), 'SAGEMAKER_VALIDATE_ROLE': 'false', 'AWS_ACCESS_KEY_ID': 'testing',
           'AWS_SECRET_ACCESS_KEY': 'testing', 'AWS_DEFAULT_REGION': region,
           'SAGEMAKER_USER_CONFIG_OVERRIDE': str(tmp_path/'sm-config.yaml'), **extra}
    (tmp_path/'sm-config.yaml').write_text(cloud.TELEMETRY_OPT_OUT)
    for profile in ('SAGEMAKER', 'SAGEMAKER_LOCAL'):
        env.update({f'RECSYS_{profile}_RUNS_DIR': str(tmp_path/'runs'), f'RECSYS_{profile}_DATA_DIR': str(tmp_path/'data'),
                    f'RECSYS_{profile}_S3_PREFIX': f's3://{bucket}/recsys'})
        env.update({k.replace('RECSYS_LOCAL_', f'RECSYS_{profile}_'): v for k, v in isolated_tracking(tmp_path).items()})
    for k, v in env.items(): monkeypatch.setenv(k, v)
