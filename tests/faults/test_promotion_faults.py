"""Promotion edge cases that must not rewrite history: promoting the version that is already champion is a no-op
that says so and keeps the gate report that crowned it."""
from conftest import ROOT
from test_run_faults import recsys


def test_promoting_the_champion_again_keeps_its_report(clean_env, monkeypatch):
    from recsys_lib.tracking import get_champion, get_version_report
    for k, v in clean_env.items():
        if k.startswith('RECSYS_'): monkeypatch.setenv(k, v)
    r = recsys('run', ROOT/'pipelines'/'train.ipynb', '-p', 'preset', 'tiny', '-p', 'model', 'popularity',
               '-p', 'registered_model', 'pr', '--no-progress', env=clean_env)
    assert r.returncode == 0, r.stderr[-2000:]
    first = recsys('promote', 'pr', env=clean_env)
    assert first.returncode == 0 and 'PROMOTE' in first.stdout, first.stdout + first.stderr[-2000:]
    report = get_version_report('pr', 1)
    again = recsys('promote', 'pr', '--version', '1', env=clean_env)
    assert again.returncode == 0 and 'v1 is already the champion' in again.stdout, again.stdout + again.stderr[-2000:]
    assert get_version_report('pr', 1) == report and 'no champion yet' in report and get_champion('pr') == 1
