"""Promotion edge cases that must not rewrite history: promoting the version that is already champion is a no-op
that says so and keeps the gate report that crowned it, and promotions started at the same moment end as if they had
run one after the other."""
import re, subprocess

from conftest import BIN, ROOT
from test_run_faults import recsys

GATE_AGAINST = re.compile(r"Challenger `v(\d+)` against champion `v(\d+)`")


def _train(name, model, env):
    r = recsys('run', ROOT/'pipelines'/'train.ipynb', '-p', 'preset', 'tiny', '-p', 'model', model,
               '-p', 'registered_model', name, '--no-progress', env=env)
    assert r.returncode == 0, r.stderr[-2000:]


def _use_env(clean_env, monkeypatch):
    "Point this process's `recsys_lib.tracking` at the subprocesses' stores."
    for k, v in clean_env.items():
        if k.startswith('RECSYS_'): monkeypatch.setenv(k, v)


def test_promoting_the_champion_again_keeps_its_report(clean_env, monkeypatch):
    from recsys_lib.registry import get_champion, get_version_report
    _use_env(clean_env, monkeypatch)
    _train('pr', 'popularity', clean_env)
    first = recsys('promote', 'pr', env=clean_env)
    assert first.returncode == 0 and 'PROMOTE' in first.stdout, first.stdout + first.stderr[-2000:]
    report = get_version_report('pr', 1)
    again = recsys('promote', 'pr', '--version', '1', env=clean_env)
    assert again.returncode == 0 and 'v1 is already the champion' in again.stdout, again.stdout + again.stderr[-2000:]
    assert get_version_report('pr', 1) == report and 'no champion yet' in report and get_champion('pr') == 1


def _serial_order(start:int, reports:dict, champion:int)->list|None:
    "The order in which promoting the versions of `reports` one at a time from champion `start` gives these reports and this champion, or None."
    for order in (list(reports), list(reports)[::-1]):
        current = start
        for v in order:
            against = GATE_AGAINST.search(reports[v])
            if against is None or int(against.group(2)) != current: break   # compared against another champion
            if 'Promotion gate: PROMOTE' in reports[v]: current = v
        else:
            if current == champion: return order
    return None


# Each process imports everything and opens the store first, then waits for the word to go: without this barrier the
# seconds of imports would decide the order, and the promotions would hardly ever overlap.
PROMOTER = """
import sys, time
from recsys_lib import tracking
from recsys_lib.pipeline import promote_version
from recsys_lib.settings import load_settings
tracking.get_client()
print('ready', flush=True)
sys.stdin.readline()
time.sleep(float(sys.argv[2]))
print(promote_version('race', int(sys.argv[1]), settings=load_settings(), n_boot=200).promote, flush=True)
"""


def test_concurrent_promotions_equal_a_serial_order(clean_env, monkeypatch):
    "Two `promote_version` of different versions in two processes at once, several interleavings: each result is a serial order."
    import sys
    from recsys_lib.registry import get_champion, get_version_report, set_alias, set_version_report
    _use_env(clean_env, monkeypatch)
    for model in ('popularity', 'itemknn', 'ease'): _train('race', model, clean_env)   # v1 weak; v2 and v3 each beat it
    for delay in (0, 0, 0.3, 1.0):   # v3 starts this many seconds after v2
        set_alias('race', 'champion', 1)
        for v in (2, 3): set_version_report('race', v, 'not compared yet', artifact=False)
        procs = {v: subprocess.Popen([sys.executable, '-c', PROMOTER, str(v), str(delay if v == 3 else 0)], env=clean_env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for v in (2, 3)}
        for p in procs.values(): assert p.stdout.readline().strip() == 'ready', p.communicate()[1][-2000:]
        for p in procs.values(): p.stdin.write('go\n'); p.stdin.flush()
        outs = {v: p.communicate(timeout=600) for v, p in procs.items()}
        for v, p in procs.items(): assert p.returncode == 0, outs[v][1][-2000:]
        reports, champion = {v: get_version_report('race', v) for v in (2, 3)}, get_champion('race')
        against = {v: GATE_AGAINST.search(r) and GATE_AGAINST.search(r).groups() for v, r in reports.items()}
        assert _serial_order(1, reports, champion) is not None, (delay, champion, against)
