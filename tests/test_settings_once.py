"Each `recsys` command resolves its profile once (`load_settings`) and passes the `Settings` down."
import sys

import pytest

import recsys_lib.settings
from recsys_lib.cli import main
from recsys_lib.params import new_notebook


@pytest.fixture
def count_loads(env, monkeypatch):
    "Calls of `load_settings` from any recsys_lib module, wherever it was imported."
    calls, real = [], recsys_lib.settings.load_settings
    def counted(*a, **k): calls.append(a); return real(*a, **k)
    for name, module in list(sys.modules.items()):
        if name.startswith('recsys_lib') and getattr(module, 'load_settings', None) is real:
            monkeypatch.setattr(module, 'load_settings', counted)
    return calls


def test_one_command_loads_settings_once(count_loads, tmp_path, capsys):
    nb = new_notebook(tmp_path/'tiny.ipynb', 'n: int = 1  # a number', 'n + 1')
    for argv in (['runs'], ['inspect', str(nb)], ['run', str(nb), '-p', 'n=2', '--no-track', '--no-progress'], ['runs'],
                 ['run', str(nb), '-p', 'n=3', '--no-progress']):   # the last one logged to MLflow too
        count_loads.clear()
        assert main(argv) == 0, capsys.readouterr().err
        assert len(count_loads) == 1, (argv, count_loads)
    assert (tmp_path/'mlflow.db').is_file()   # the tracked run reached MLflow, through the same Settings
