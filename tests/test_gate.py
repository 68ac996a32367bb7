"""The evaluation gate of pull requests (`recsys gate`, recsys_lib.gate): the committed config passes on this tree, a
deliberately worse candidate fails with exit 1 and names the metric, a baseline from other data is refused (exit 2),
a bad config key is one line naming it (exit 2), `--update-baseline` round-trips, and the GitHub workflow calls only
make targets and `recsys` options that exist, running the gate exactly as `make gate` does."""
import json, re, shlex, subprocess, textwrap

import pytest
import yaml

from recsys_lib.cli import build_parser

from conftest import BIN, ROOT, one_line_error

BASELINES = ROOT/'ci'/'baselines'


def recsys(*args, env, cwd=ROOT):
    return subprocess.run([str(BIN/'recsys'), *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def config(tmp_path, candidates, datasets="tiny: {preset: tiny, seed: 1}", baseline=f"{{file: '{BASELINES}/{{candidate}}-{{dataset}}.json'}}",
           extra=""):
    "A reduced gate config in tmp_path (same code path as ci/evaluation.yaml, fewer cases)."
    p = tmp_path/'evaluation.yaml'
    p.write_text(textwrap.dedent(f"""\
        metric: ndcg@10
        thresholds: {{ndcg@10: 0.005, recall@10: 0.01, coverage@10: 0.02}}
        n_boot: 500
        datasets: {{{datasets}}}
        candidates: {{{candidates}}}
        baseline: {baseline}
        """) + extra)
    return p


def workflow():
    return yaml.safe_load((ROOT/'.github'/'workflows'/'evaluation.yml').read_text())


def makefile_targets():
    return set(re.findall(r'^([A-Za-z][\w-]*)\s*:(?!=)', (ROOT/'Makefile').read_text(), re.M))


def test_workflow_calls_what_exists_and_the_gate_runs_as_called(clean_env, tmp_path):
    flow = workflow()
    assert 'pull_request' in flow[True if True in flow else 'on'], "the gate must run on pull requests"
    steps = [s for job in flow['jobs'].values() for s in job['steps']]
    runs = [s['run'] for s in steps if 'run' in s]
    targets, gate_calls = makefile_targets(), []
    for line in (l for r in runs for l in r.splitlines() if l.strip()):
        words = shlex.split(line)
        assert words[0] == 'make', f"the workflow should call the project's make targets, not {line!r}"
        named = [w for w in words[1:] if not w.startswith('-') and '=' not in w]
        assert named and set(named) <= targets, f"{line!r}: unknown make target(s) {set(named) - targets}"
        if 'gate' in named: gate_calls.append(words)
    assert len(gate_calls) == 1
    # the upload step uploads the folder the gate writes to
    out = dict(w.split('=', 1) for w in gate_calls[0][1:] if '=' in w).get('GATE_OUT')
    upload = next(s for s in steps if str(s.get('uses', '')).startswith('actions/upload-artifact'))
    assert out and upload['with']['path'].rstrip('/') == out and upload.get('if') == 'always()'
    # the command `make gate` runs, as the workflow calls it (its output folder moved under tmp_path)
    words = [w if not w.startswith('GATE_OUT=') else f'GATE_OUT={tmp_path/"out"}' for w in gate_calls[0]]
    recipe = subprocess.run([*words, '-n'], capture_output=True, text=True, cwd=ROOT, timeout=60).stdout.splitlines()
    gate = shlex.split(next(l for l in recipe if re.search(r'/recsys gate\b', l)))
    assert gate[0].endswith('/recsys')
    build_parser().parse_args(gate[1:])   # every option it passes is one `recsys gate` accepts (argparse exits 2 otherwise)
    summary = tmp_path/'summary.md'
    r = subprocess.run([str(BIN/'recsys'), *gate[1:]], capture_output=True, text=True, cwd=ROOT, timeout=300,
                       env={**clean_env, 'GITHUB_STEP_SUMMARY': str(summary)})
    assert r.returncode == 0, r.stdout + r.stderr
    report = (tmp_path/'out'/'report.md').read_text()
    assert report.startswith('## Evaluation gate: PASS')
    assert '| candidate | dataset | metric | baseline | candidate | delta | 95% CI | allowed drop | decision |' in report
    assert summary.read_text().strip() == report.strip()     # appended to the job summary
    result = json.loads((tmp_path/'out'/'result.json').read_text())
    cfg = yaml.safe_load((ROOT/'ci'/'evaluation.yaml').read_text())
    assert result['passed'] and {(c['candidate'], c['dataset']) for c in result['cases']} == \
        {(c, d) for c in cfg['candidates'] for d in cfg['datasets']}
    assert all(c['metrics']['ndcg@10']['delta'] == 0 for c in result['cases']), "an unchanged model compares to a delta of 0"


def test_worse_candidate_fails_and_names_the_metric(clean_env, tmp_path):
    # EASE regularised into popularity, against EASE's committed baseline
    cfg = config(tmp_path, "ease: {model: ease, params: {l2: 10000000}}", datasets="small: {preset: small, seed: 0}")
    r = recsys('gate', cfg, '--report', tmp_path/'r.md', env=clean_env)
    assert r.returncode == 1, r.stdout + r.stderr
    assert 'FAIL  ease on small' in r.stdout and 'ease on small: FAIL ndcg@10' in r.stdout
    report = (tmp_path/'r.md').read_text()
    assert report.startswith('## Evaluation gate: FAIL')
    assert re.search(r'\| ease \| small \| ndcg@10 \|.*\| FAIL: significantly worse', report)
    case = json.loads((tmp_path/'result.json').read_text())['cases'][0]
    assert not case['passed'] and case['metrics']['ndcg@10']['ci_upper'] < 0


def test_baseline_from_other_data_is_refused(clean_env, tmp_path):
    # the committed tiny baselines are of seed 1: seed 2 is other data
    cfg = config(tmp_path, "ease: {model: ease, params: {l2: 200}}", datasets="tiny: {preset: tiny, seed: 2}")
    line = one_line_error(recsys('gate', cfg, '--report', tmp_path/'r.md', env=clean_env), 2)
    doc = json.loads((BASELINES/'ease-tiny.json').read_text())
    assert f"measured on data {doc['data']['fingerprint'][:16]!r}" in line
    assert f"recsys gate {cfg} --update-baseline" in line
    assert not (tmp_path/'r.md').exists()


@pytest.mark.parametrize('change, key', [
    ("n_bot: 5\n", "unknown key 'n_bot'"),
    ("split: {protocol: leave_last_out, n_test: 2}\n", "unknown key split.n_test"),
])
def test_bad_config_key_is_one_line(clean_env, tmp_path, change, key):
    cfg = config(tmp_path, "p: {model: popularity}", extra=change)
    line = one_line_error(recsys('gate', cfg, env=clean_env), 2)
    assert str(cfg) in line and key in line


def test_update_baseline_round_trip(clean_env, tmp_path):
    cfg = config(tmp_path, "itemknn: {model: itemknn}, pop: {model: popularity}", baseline="{file: 'base/{candidate}-{dataset}.json'}")
    r = recsys('gate', cfg, '--report', tmp_path/'r.md', env=clean_env)
    assert one_line_error(r, 2).endswith("; write it with `recsys gate CONFIG --update-baseline`")
    r = recsys('gate', cfg, '--update-baseline', env=clean_env)
    assert r.returncode == 0, r.stderr
    assert [l.split(' (new)')[0] for l in r.stdout.splitlines()] == [f"wrote {tmp_path}/base/{c}-tiny.json" for c in ('itemknn', 'pop')]
    doc = json.loads((tmp_path/'base'/'pop-tiny.json').read_text())
    assert doc['candidate'] == {'model': 'popularity', 'params': {}} and doc['data']['source'] == 'synthetic:tiny:seed1'
    assert len(doc['users']) == len(doc['metrics']['ndcg@10']) == doc['data']['test_users'] == 300
    assert 'recsys_lib' in doc and 'commit' in doc
    assert recsys('gate', cfg, '--report', tmp_path/'r.md', env=clean_env).returncode == 0
    r = recsys('gate', cfg, '--update-baseline', '--candidate', 'pop', env=clean_env)
    assert r.returncode == 0 and r.stdout.startswith(f"updated {tmp_path}/base/pop-tiny.json: ndcg@10 ") and 'data unchanged' in r.stdout


def test_committed_baselines_are_small():
    files = list(BASELINES.glob('*.json'))
    assert files and sum(f.stat().st_size for f in files) < 1_000_000


def test_registry_champion_is_the_baseline_when_configured(env, tmp_path, monkeypatch):
    "With `registry:` and `file:`, the registered champion is scored on the frozen split; without a champion, the file is used."
    from recsys_lib import registry
    from recsys_lib.gate import read_gate_config, run_gate
    from recsys_lib.pipeline import LocalEngine
    from recsys_lib.settings import load_settings
    from recsys_lib.tracking import log_run
    from recsys_lib.core import write_json
    monkeypatch.setenv('RECSYS_LOCAL_DATA_DIR', str(tmp_path/'data'))
    settings = load_settings()
    cfg = read_gate_config(config(tmp_path, "ease: {model: ease, params: {l2: 200}}, popularity: {model: popularity}",
                                  baseline=f"{{registry: gated@champion, file: '{BASELINES}/{{candidate}}-{{dataset}}.json'}}"), settings)
    registry_name = 'gated'
    engine = LocalEngine(settings)
    data = engine.load_data(preset='tiny', seed=1)
    split, _ = engine.frozen_split(data)
    d = tmp_path/'runs'/'train'/'r1'
    for f, obj in (('params.json', {'model': 'ease'}), ('metrics.json', {}), ('train.ipynb', {'cells': [], 'metadata': {}, 'nbformat': 4, 'nbformat_minor': 5}),
                   ('manifest.json', {'status': 'succeeded'})): write_json(d/f, obj)
    engine.fit('ease', {'l2': 200}, split).save(d/'model')
    run_id = log_run(d)
    # no champion yet: the committed files are the baselines
    report = run_gate(cfg, settings)
    assert report.passed and all('-tiny.json (commit' in c.baseline and 'no such version' in c.baseline for c in report.cases)
    registry.register_model(registry_name, run_id, settings, alias='champion')
    report = run_gate(cfg, settings)
    ease, pop = report.cases
    assert ease.baseline.startswith('registry gated v1') and ease.passed and ease.result.table.loc['ndcg@10', 'delta'] == 0
    assert not pop.passed and pop.result.table.loc['ndcg@10', 'ci_upper'] < 0   # popularity against the EASE champion
