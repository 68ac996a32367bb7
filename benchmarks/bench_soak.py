"""Soak: many consecutive pipeline runs through one runner process, as a long-lived scheduler would drive them.

Each run executes pipelines/train.ipynb on the tiny preset with papermill (`run_notebook`), then logs it to MLflow
and registers its model (`register_run`), against a fresh embedded store in a temporary folder. Reported: runs per
minute, failures (goal 0), whether the run store and the registry agree (every run recorded once, in the run store
and in MLflow; every registered version loadable), and the runner's resident memory after each run, to show whether
it grows run over run.

    .venv/bin/python benchmarks/bench_soak.py            # 50 runs
    .venv/bin/python benchmarks/bench_soak.py --runs 5   # smoke run
"""
import argparse, os, statistics, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_mib(field: str = 'VmRSS') -> float:
    "This process's resident memory (VmRSS) or its peak (VmHWM), MiB."
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith(field + ':'): return int(line.split()[1]) / 1024
    return float('nan')


def isolate(store: Path):
    "Point the local profile's stores at `store` before recsys_lib reads its settings."
    db = f"sqlite:///{store/'mlflow.db'}"
    os.environ.update({'RECSYS_SETTINGS': str(ROOT/'settings.ini'), 'RECSYS_LOCAL_DATA_DIR': str(store/'data'),
                       'RECSYS_LOCAL_RUNS_DIR': str(store/'runs'), 'RECSYS_LOCAL_TRACKING_URI': db,
                       'RECSYS_LOCAL_REGISTRY_URI': db, 'RECSYS_LOCAL_ARTIFACT_DIR': str(store/'mlartifacts')})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--runs', type=int, default=50)
    ap.add_argument('--model', default='popularity', help="model of every run (a key of recsys_lib.models.MODELS)")
    args = ap.parse_args()
    store = Path(tempfile.mkdtemp(prefix='recsys-soak-'))
    isolate(store)
    from tqdm.auto import tqdm
    from recsys_lib.pipeline import register_run
    from recsys_lib.runner import run_notebook
    from recsys_lib.runs import list_runs
    from recsys_lib.registry import load_registered_model
    import mlflow

    params = {'preset': 'tiny', 'model': args.model, 'registered_model': 'soak'}
    durations, rss, failures = [], [], []
    t0 = time.perf_counter()
    for i in tqdm(range(args.runs), desc='runs', unit='run'):
        t = time.perf_counter()
        res = run_notebook(ROOT/'pipelines'/'train.ipynb', params, progress=False)
        tracked = register_run(res.run_dir)
        durations.append(time.perf_counter() - t)
        rss.append(rss_mib())
        if not res.ok or 'version' not in tracked: failures.append((i, res.status, res.reason))
    wall = time.perf_counter() - t0

    runs = list_runs(store/'runs', limit=10**6)
    client = mlflow.MlflowClient(tracking_uri=os.environ['RECSYS_LOCAL_TRACKING_URI'], registry_uri=os.environ['RECSYS_LOCAL_REGISTRY_URI'])
    logged = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=10**4)
    versions = client.search_model_versions("name='soak'", max_results=10**4)
    loadable = sum(1 for v in versions if load_registered_model('soak', version=int(v.version)).is_fitted)
    n = args.runs
    print(f"\n{n} runs of train.ipynb (preset tiny, model {args.model}) in one runner process; store {store}")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load average at the end {os.getloadavg()[0]:.1f}")
    print(f"wall {wall:.0f} s: {n / wall * 60:.1f} runs/min; per run median {statistics.median(durations):.1f} s "
          f"(min {min(durations):.1f}, max {max(durations):.1f})")
    print(f"failures: {len(failures)} {failures[:3]}")
    print(f"run store: {len(runs)} runs, {len(set(runs.run_id))} distinct, statuses {runs.status.value_counts().to_dict()}")
    print(f"MLflow: {len(logged)} runs ({len({r.info.run_id for r in logged})} distinct); "
          f"registry: {len(versions)} versions ({sorted(int(v.version) for v in versions) == list(range(1, n + 1))} = 1..{n}), "
          f"{loadable} loadable")
    consistent = len(runs) == len(logged) == len(versions) == loadable == n and not failures
    print(f"consistent: {consistent}")
    k = max(1, n // 5)
    print(f"runner RSS after run: first {k} median {statistics.median(rss[:k]):.0f} MiB, last {k} median "
          f"{statistics.median(rss[-k:]):.0f} MiB, growth per run {(rss[-1] - rss[k - 1]) / max(n - k, 1):.2f} MiB; "
          f"peak (VmHWM) {rss_mib('VmHWM'):.0f} MiB")
    return 0 if consistent else 1


if __name__ == '__main__':
    sys.exit(main())
