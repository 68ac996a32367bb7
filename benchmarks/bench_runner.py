"""Pipeline runner overhead: seconds to run a tiny notebook with `run_notebook`, against the same code in-process.

    .venv/bin/python benchmarks/bench_runner.py [--repeat 5]

The notebook has a parameters cell (two typed parameters, one given as text) and two small cells: a sum over
range(10_000) and a `log_metrics` call. Side by side, in one process, each repeated `--repeat` times (median shown):

- in-process: `exec` of the same cell sources in a fresh namespace (the lower bound: no kernel, no files);
- bare papermill: `papermill.execute_notebook` with the parameters, to a temporary file (kernel start, execution and
  the notebook write, no contract, no record);
- run_notebook: the whole runner: contract check, run folder, git state, package versions, papermill, diagnosis,
  manifest.

Runs go to a temporary folder that is removed afterwards. The goal for the runner's overhead is under 3 s. Nothing
here asserts on time.
"""
from __future__ import annotations
import argparse, logging, os, platform, statistics, tempfile, time
from pathlib import Path

from recsys_lib.params import new_notebook
from recsys_lib.runner import run_notebook

PARAMS = "n: int = 10_000  # items to sum\nscale: float = 1.0  # factor"
CELLS = ("total = sum(range(n)) * scale",
         "from recsys_lib.runner import log_metrics\nlog_metrics({'total': total})")


def timed(fn) -> float:
    t0 = time.perf_counter(); fn(); return time.perf_counter() - t0


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
        results = {'in-process exec': [], 'bare papermill': [], 'run_notebook': []}
        run_notebook(nb, {'n': '5000'}, run_root=d/'runs', progress=False)   # warm-up: imports, page cache
        for _ in range(args.repeat):
            results['in-process exec'].append(timed(lambda: exec(code, {})))
            results['bare papermill'].append(timed(lambda: papermill.execute_notebook(
                str(nb), str(d/'out.ipynb'), parameters={'n': 5000}, progress_bar=False)))
            results['run_notebook'].append(timed(lambda: run_notebook(nb, {'n': '5000'}, run_root=d/'runs', progress=False)))
    print(f"tiny notebook, median of {args.repeat} ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)")
    for name, ts in results.items():
        print(f"{name:<16} {statistics.median(ts):8.3f} s   (min {min(ts):.3f}, max {max(ts):.3f})")
    over = statistics.median(results['run_notebook']) - statistics.median(results['in-process exec'])
    print(f"{'overhead':<16} {over:8.3f} s   run_notebook - in-process (goal < 3 s)")


if __name__ == '__main__':
    main()
