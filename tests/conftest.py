"Shared fixtures for the integration tests: the project root and the venv's console scripts."
import os, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture
def root(): return ROOT


@pytest.fixture
def clean_env(tmp_path):
    "Environment for subprocesses: no inherited RECSYS_* overrides, stores under tmp_path."
    env = {k: v for k, v in os.environ.items() if not k.startswith('RECSYS_')}
    env['RECSYS_SETTINGS'] = str(ROOT/'settings.ini')
    env['RECSYS_LOCAL_DATA_DIR'] = str(tmp_path/'data')
    env['RECSYS_LOCAL_RUNS_DIR'] = str(tmp_path/'runs')
    env.update(isolated_tracking(tmp_path))
    return env


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
