"The `recsys` console script, run as a user would run it."
import subprocess

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
