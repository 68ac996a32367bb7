"""Distributed batch scoring: `batch_recommend_spark` on a local Spark against the single-process `batch_recommend`.

    .venv/bin/python benchmarks/bench_spark_scoring.py [--users 1000000] [--items 10000] [--master 'local[2]']
    .venv/bin/python benchmarks/bench_spark_scoring.py --quick      # 50,000 users x 2,000 items, 1 repeat

Data: `recsys_lib.synthetic.make_synthetic` with `--users` users, `--items` items and `--per-user` interactions per
user on average (seeded). ItemKNN (100 neighbours) is fit on it and saved to benchmarks/.data/ (reused by later runs
with the same sizes); neither is timed. ItemKNN is the model because its fit is fast at 10k items and its per-user
scoring (sparse history @ sparse similarity, densified, masked, top-K) is a realistic cost; its scores do not depend
on which users share a block, so the two outputs can be compared exactly.

Each side runs in its own child process, so that peak RSS (VmHWM of /proc/self/status; `getrusage`'s ru_maxrss would
carry over the parent's peak through fork and exec) is that of one side only:

- local: `load_model` + `batch_recommend(model, dest, k, block_users)` for every user, progress bar off;
- spark: `batch_recommend_spark(model_dir, dest, k=k, block_users=block_users)` on a session built by `spark_session()`
  with `RECSYS_LOCAL_SPARK_MASTER` = `--master` (default `local[2]`); the first run (Python workers start, model
  shipped and loaded) is reported apart from the median of the following runs. Besides the Python driver's peak RSS,
  a sampler thread (psutil, every 0.2 s) records the peak RSS of the JVM (driver and executors are one JVM in local
  mode) and the peak of the summed RSS of the Python worker processes.

The two published tables are then read back and compared: same (user, item, rank) rows and allclose scores.
Nothing here asserts on time.
"""
from __future__ import annotations
import argparse, json, os, platform, resource, shutil, statistics, subprocess, sys, threading, time
from pathlib import Path

import numpy as np

SCRATCH = Path(__file__).parent/'.data'/'bench_spark_scoring'


def rss_peak_mib() -> float:
    "Peak RSS of this process. VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over exec from the forking parent."
    try:
        for line in Path('/proc/self/status').read_text().splitlines():
            if line.startswith('VmHWM:'): return int(line.split()[1]) / 1024
    except OSError: pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == 'darwin' else 1024)


class Sampler(threading.Thread):
    "Peak RSS of the JVM children of this process and of the summed Python workers (children of the JVM)."
    def __init__(self, every=0.2):
        super().__init__(daemon=True); self.every, self.jvm, self.workers, self.stop_ = every, 0, 0, threading.Event()

    def run(self):
        import psutil
        me = psutil.Process()
        while not self.stop_.is_set():
            jvm = workers = 0
            try:
                for p in me.children(recursive=True):
                    try:
                        name, rss = ' '.join(p.cmdline()[:3]), p.memory_info().rss
                    except psutil.Error: continue
                    if 'java' in name: jvm += rss
                    elif 'pyspark' in ' '.join(p.cmdline()): workers += rss
            except psutil.Error: pass
            self.jvm, self.workers = max(self.jvm, jvm), max(self.workers, workers)
            time.sleep(self.every)


def child(a):
    "Run one side, print a JSON line with its timings and memory."
    out, res = Path(a.out), {}
    if a.child == 'local':
        from recsys_lib.inference import batch_recommend
        from recsys_lib.models import load_model
        t0 = time.perf_counter(); model = load_model(a.model_dir); res['load_s'] = time.perf_counter() - t0
        res['times'] = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            batch_recommend(model, out, k=a.k, block_users=a.block_users, progress=False)
            res['times'].append(time.perf_counter() - t0)
    else:
        sampler = Sampler(); sampler.start()
        import warnings; warnings.filterwarnings('ignore', message='PySpark does not yet fully support pandas')
        from recsys_lib.spark.scoring import batch_recommend_spark
        from recsys_lib.settings import load_settings
        from recsys_lib.spark.session import spark_session
        t0 = time.perf_counter(); spark = spark_session(load_settings('local')); res['session_s'] = time.perf_counter() - t0
        res['master'], res['rss_after_session_mib'] = spark.sparkContext.master, rss_peak_mib()
        res['times'] = []
        for _ in range(a.repeats + 1):  # the first run starts the Python workers and loads the model in each
            t0 = time.perf_counter()
            m = batch_recommend_spark(a.model_dir, out, k=a.k, block_users=a.block_users, partitions=a.partitions, spark=spark)
            res['times'].append(time.perf_counter() - t0)
        res['partitions'], res['files'] = m['partitions'], len(m['files'])
        sampler.stop_.set(); sampler.join()
        res['jvm_peak_mib'], res['workers_peak_mib'] = sampler.jvm / 2**20, sampler.workers / 2**20
    res['driver_peak_rss_mib'] = rss_peak_mib()
    print('RESULT ' + json.dumps(res), flush=True)


def run_child(a, side, env=None) -> dict:
    cmd = [sys.executable, __file__, '--child', side, '--model-dir', str(a.model_dir), '--out', str(SCRATCH/f'out_{side}'),
           '--k', str(a.k), '--block-users', str(a.block_users), '--repeats', str(a.repeats)]
    if a.partitions: cmd += ['--partitions', str(a.partitions)]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    lines = [l for l in r.stdout.splitlines() if l.startswith('RESULT ')]
    if r.returncode or not lines: sys.exit(f"{side} run failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}")
    return json.loads(lines[-1][len('RESULT '):])


def prepare(a) -> Path:
    "Fit and save the model once per data size; later runs reuse it."
    from recsys_lib.data import Interactions
    from recsys_lib.itemknn import ItemKNN
    from recsys_lib.synthetic import make_synthetic
    d = SCRATCH/f'itemknn_{a.users}x{a.items}x{a.per_user}'
    if (d/'manifest.json').is_file(): print(f"model: reusing {d}"); return d
    t0 = time.perf_counter()
    inter = Interactions.from_df(make_synthetic(n_users=a.users, n_items=a.items, n_interactions=a.per_user * a.users, seed=0))
    print(f"data: {len(inter):,} interactions, {inter.n_users:,} users x {inter.n_items:,} items ({time.perf_counter() - t0:.0f} s)")
    t0 = time.perf_counter(); model = ItemKNN(neighbors=100).fit(inter)
    print(f"ItemKNN fit: {time.perf_counter() - t0:.1f} s (not part of the comparison)")
    model.save(d)
    return d


def compare(a):
    "Both published tables, read back and compared row for row."
    from recsys_lib.inference import read_recommendations
    x, y = read_recommendations(SCRATCH/'out_local'), read_recommendations(SCRATCH/'out_spark')
    if len(x) != len(y): return f"DIFFERENT: {len(x):,} vs {len(y):,} rows"
    x, y = (t.iloc[np.lexsort((t['rank'].to_numpy(), t.user_id.to_numpy()))] for t in (x, y))
    same = all(np.array_equal(x[c].to_numpy(), y[c].to_numpy()) for c in ('user_id', 'item_id', 'rank'))
    close = np.allclose(x.score.to_numpy(), y.score.to_numpy(), rtol=1e-5, atol=1e-6)
    return f"{'same' if same else 'DIFFERENT'} (user, item, rank) rows ({len(x):,}); scores allclose: {close}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--users', type=int, default=1_000_000)
    ap.add_argument('--items', type=int, default=10_000)
    ap.add_argument('--per-user', type=int, default=8, help="mean interactions per user")
    ap.add_argument('--k', type=int, default=10)
    ap.add_argument('--block-users', type=int, default=4096)
    ap.add_argument('--partitions', type=int, default=None, help="user hash partitions; default spark.sql.shuffle.partitions")
    ap.add_argument('--repeats', type=int, default=3, help="timed runs of each side; the median is reported")
    ap.add_argument('--master', default=os.environ.get('RECSYS_LOCAL_SPARK_MASTER', 'local[2]'))
    ap.add_argument('--quick', action='store_true', help="50,000 users x 2,000 items, 1 repeat: a smoke run")
    ap.add_argument('--no-check', action='store_true', help="skip reading both outputs back and comparing them")
    ap.add_argument('--keep', action='store_true', help="keep the outputs in benchmarks/.data")
    ap.add_argument('--child', choices=['local', 'spark'], help=argparse.SUPPRESS)
    ap.add_argument('--model-dir', help=argparse.SUPPRESS)
    ap.add_argument('--out', help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child: return child(a)
    if a.quick: a.users, a.items, a.repeats = 50_000, 2_000, 1
    import pyspark
    print(f"{os.cpu_count()} cores; python {platform.python_version()}, numpy {np.__version__}, pyspark {pyspark.__version__}")
    a.model_dir = prepare(a)
    size = sum(f.stat().st_size for f in a.model_dir.iterdir()) / 2**20
    local = run_child(a, 'local')
    spark = run_child(a, 'spark', {'RECSYS_LOCAL_SPARK_MASTER': a.master})
    t_local, t_spark, first = statistics.median(local['times']), statistics.median(spark['times'][1:]), spark['times'][0]
    n = a.users
    print(f"model folder: {size:.0f} MiB; {n:,} users x {a.items:,} items, top-{a.k}, blocks of {a.block_users} users; "
          f"spark master {spark['master']}, {spark['partitions']} partitions -> {spark['files']} files")
    print(f"{'':34}{'median s':>10}{'users/s':>12}{'driver peak RSS MiB':>22}")
    print(f"{'batch_recommend (1 process)':34}{t_local:10.2f}{n / t_local:12,.0f}{local['driver_peak_rss_mib']:22,.0f}")
    print(f"{'batch_recommend_spark':34}{t_spark:10.2f}{n / t_spark:12,.0f}{spark['driver_peak_rss_mib']:22,.0f}")
    print(f"spark / local wall time: {t_spark / t_local:.2f} (speed-up {t_local / t_spark:.2f}x); "
          f"repeats {a.repeats}: local {[round(t, 2) for t in local['times']]}, spark {[round(t, 2) for t in spark['times'][1:]]}")
    print(f"spark first run (Python workers start, model shipped and loaded once per worker): {first:.2f} s; "
          f"session start {spark['session_s']:.1f} s; local load_model {local['load_s']:.1f} s (not timed above)")
    print(f"spark side, other processes: JVM peak RSS {spark['jvm_peak_mib']:,.0f} MiB; Python workers peak (sum) "
          f"{spark['workers_peak_mib']:,.0f} MiB; Python driver RSS after session start {spark['rss_after_session_mib']:,.0f} MiB")
    if not a.no_check: print("outputs:", compare(a))
    if not a.keep:
        for side in ('local', 'spark'): shutil.rmtree(SCRATCH/f'out_{side}', ignore_errors=True)


if __name__ == '__main__':
    main()
