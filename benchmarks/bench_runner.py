"""Pipeline runner overhead: seconds to run a tiny notebook with `run_notebook` and `recsys run`, against in-process code.

    .venv/bin/python benchmarks/bench_runner.py [--repeat 5]

The notebook has a parameters cell (two typed parameters, one given as text) and two small cells: a sum over
range(10_000) and a `log_metrics` call. Side by side, in one run, each repeated `--repeat` times (median shown):

- in-process: `exec` of the same cell sources in a fresh namespace (the lower bound: no kernel, no files);
- bare papermill: `papermill.execute_notebook` with the parameters, to a temporary file (kernel start, execution and
  the notebook write, no contract, no record);
- run_notebook: the whole runner: contract check, run folder, git state, package versions, papermill, diagnosis,
  manifest;
- recsys run: the command a scheduler calls, as a subprocess: interpreter start and imports, the store check,
  run_notebook, and logging the run to MLflow (parameters, metrics, the executed notebook). The tiny notebook saves
  no model, so there is no registration to time. Its MLflow stores are created by the warm-up run: the figures are
  for an existing store;
- recsys run --no-track: the same command without the store check and the MLflow logging, which splits the command's
  cost between its own start (with a fresh runner) and MLflow.

Runs and stores go to a temporary folder that is removed afterwards. The goal for the runner's overhead is under 3 s.
Nothing here asserts on time.
"""
from __future__ import annotations
import argparse, logging, os, platform, statistics, subprocess, sys, tempfile, time
from pathlib import Path

from recsys_lib.params import new_notebook
from recsys_lib.runner import run_notebook

ROOT = Path(__file__).resolve().parents[1]
RECSYS = Path(sys.executable).parent/'recsys'   # the console script of the environment running this file
PARAMS = "n: int = 10_000  # items to sum\nscale: float = 1.0  # factor"
CELLS = ("total = sum(range(n)) * scale",
         "from recsys_lib.record import log_metrics\nlog_metrics({'total': total})")


def timed(fn) -> float:
    t0 = time.perf_counter(); fn(); return time.perf_counter() - t0


def cli_env(folder:Path)->dict:
    "This environment without RECSYS_* overrides, the project's settings, and every local store under `folder`."
    env = {k: v for k, v in os.environ.items() if not k.startswith('RECSYS_')}
    db = f"sqlite:///{folder/'mlflow.db'}"
    return {**env, 'RECSYS_SETTINGS': str(ROOT/'settings.ini'), 'RECSYS_LOCAL_DATA_DIR': str(folder/'data'),
            'RECSYS_LOCAL_RUNS_DIR': str(folder/'cli-runs'), 'RECSYS_LOCAL_TRACKING_URI': db, 'RECSYS_LOCAL_REGISTRY_URI': db,
            'RECSYS_LOCAL_ARTIFACT_DIR': str(folder/'mlartifacts')}


def recsys_run(nb:Path, env:dict, *options):
    "`recsys run` on the tiny notebook; an error if it does not succeed (a failed run would time the wrong thing)."
    r = subprocess.run([str(RECSYS), 'run', str(nb), '-p', 'n', '5000', '--no-progress', *options],
                       env=env, capture_output=True, text=True)
    if r.returncode != 0: raise SystemExit(f"recsys run exited {r.returncode}:\n{r.stderr[-2000:]}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--repeat', type=int, default=5)
    args = ap.parse_args(argv)
    logging.getLogger('papermill').setLevel(logging.WARNING)
    import papermill
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        nb = new_notebook(d/'tiny.ipynb', PARAMS, *CELLS)
        source = "from recsys_lib.params import Secret\n" + PARAMS + "\nn = 5_000\n" + "\n".join(CELLS)
        code = compile(source, 'tiny', 'exec')
        env = cli_env(d)
        results = {'in-process exec': [], 'bare papermill': [], 'run_notebook': [], 'recsys run --no-track': [], 'recsys run': []}
        run_notebook(nb, {'n': '5000'}, run_root=d/'runs', progress=False)   # warm-up: imports, page cache
        recsys_run(nb, env)                                                    # warm-up: creates the MLflow stores
        for _ in range(args.repeat):
            results['in-process exec'].append(timed(lambda: exec(code, {})))
            results['bare papermill'].append(timed(lambda: papermill.execute_notebook(
                str(nb), str(d/'out.ipynb'), parameters={'n': 5000}, progress_bar=False)))
            results['run_notebook'].append(timed(lambda: run_notebook(nb, {'n': '5000'}, run_root=d/'runs', progress=False)))
            results['recsys run --no-track'].append(timed(lambda: recsys_run(nb, env, '--no-track')))
            results['recsys run'].append(timed(lambda: recsys_run(nb, env)))
    print(f"tiny notebook, median of {args.repeat} ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)")
    for name, ts in results.items():
        print(f"{name:<22} {statistics.median(ts):8.3f} s   (min {min(ts):.3f}, max {max(ts):.3f})")
    for name in ('run_notebook', 'recsys run'):
        over = statistics.median(results[name]) - statistics.median(results['in-process exec'])
        print(f"{'overhead':<22} {over:8.3f} s   {name} - in-process (goal < 3 s)")


if __name__ == '__main__':
    main()
