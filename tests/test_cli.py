"The `recsys` console script, run as a user would run it."
import subprocess

import pytest

from conftest import BIN


def recsys(*args, env=None):
    return subprocess.run([str(BIN/'recsys'), *args], capture_output=True, text=True, env=env, timeout=300)


def test_compare_prints_metrics_table(clean_env):
    r = recsys('compare', '--preset', 'tiny', '--models', 'popularity', env=clean_env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    header = next(l for l in lines if 'ndcg@10' in l).split()
    row = next(l for l in lines if l.startswith('popularity')).split()
    assert {'recall@10', 'coverage@10', 'novelty@10'} <= set(header)
    values = dict(zip(header, map(float, row[1:])))
    assert all(0 <= v <= 1 for m, v in values.items() if m not in ('novelty@10', 'arp@10'))
    assert values['hit_rate@10'] > 0, "popularity should hit some held-out items"


def test_bad_input_exits_2_with_one_line(clean_env):
    r = recsys('compare', '--preset', 'tiny', '--models', 'svd', env=clean_env)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == "recsys compare: error: unknown model 'svd'; available: popularity, itemknn, ease, als, sasrec"


def test_version():
    r = recsys('--version')
    assert r.returncode == 0 and r.stdout.startswith('recsys_lib ')



def patched_recsys(tmp_path, patch, *args, env):
    "`recsys ARGS` with `patch` run first in its process: a fault the commands do not expect."
    driver = tmp_path/'patched_recsys.py'
    driver.write_text(f"import sys\n{patch}\nfrom recsys_lib.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    return subprocess.run([str(BIN/'python'), str(driver), *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize('raised, code, line', [
    ("ZeroDivisionError('injected')", 1, "recsys runs: error: ZeroDivisionError: injected (rerun with --debug for the traceback)"),
    ("RecsysError('injected')", 2, "recsys runs: error: injected"),
    ("KeyboardInterrupt()", 130, "recsys runs: interrupted"),
])
def test_any_error_is_one_line_and_debug_adds_the_traceback(raised, code, line, clean_env, tmp_path):
    patch = f"import recsys_lib.runner as r\nfrom recsys_lib.core import RecsysError\ndef fault(*a, **k): raise {raised}\nr.list_runs = fault"
    r = patched_recsys(tmp_path, patch, 'runs', env=clean_env)
    assert (r.returncode, r.stderr.strip().splitlines()[-1]) == (code, line), r.stderr[-2000:]
    assert 'Traceback' not in r.stderr
    for args in (['--debug', 'runs'], ['runs', '--debug']):   # before or after the subcommand
        r = patched_recsys(tmp_path, patch, *args, env=clean_env)
        assert r.returncode == code and 'Traceback' in r.stderr and r.stderr.strip().splitlines()[-1] == line.split(' (rerun')[0]
