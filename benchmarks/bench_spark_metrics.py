"""Top-K metrics on Spark: recsys_lib.spark.metrics.calc_metrics_spark against the local recsys_lib.metrics.calc_metrics.

    .venv/bin/python benchmarks/bench_spark_metrics.py [--quick] [--master local[2]] [--repeats 3] [--no-train]

The data of benchmarks/bench_metrics.py (5,000 users x 10,000 items; 5,000,000 truth rows and 5,000,000 train rows,
Zipf(1) item popularity, log-normal user activity; a top-10 list per user), written once to Parquet in a temporary
folder and read back with spark.read.parquet, the way Spark jobs get their tables. Both implementations compute every
metric at K=10 (precision, recall, NDCG, MAP, MRR, hit rate, coverage, and with train novelty and ARP); the script
checks that the values agree to 1e-9, then prints median wall time of `--repeats` calls, the ratio, and peak memory:
for the local path tracemalloc's peak; for Spark the driver JVM's peak heap (local mode runs the executors in the
driver JVM; `MemoryPoolMXBean` peaks, reset before the call) and the Python driver's tracemalloc peak. Spark times
include validation (one job) and the metrics (one job), not the JVM start, the Parquet write or the data generation.
`--quick` shrinks the data to 500 users x 1,000 items, 200,000 rows each. Nothing here asserts on time.
"""
from __future__ import annotations
import argparse, gc, os, platform, shutil, statistics, sys, tempfile, time, tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_metrics import make_data                       # the same tables as the local metrics benchmark

from recsys_lib.metrics import calc_metrics


def _jvm_heap_peak(spark, reset=False) -> int:
    "Sum of the driver JVM's heap pools' peak usage in bytes (optionally resetting the peaks first)."
    mf = spark.sparkContext._jvm.java.lang.management.ManagementFactory
    pools = [p for p in mf.getMemoryPoolMXBeans() if str(p.getType().toString()) == 'Heap memory']
    if reset:
        for p in pools: p.resetPeakUsage()
        return 0
    return sum(p.getPeakUsage().getUsed() for p in pools)


def measure(fn, repeats, spark=None):
    "Median wall seconds over `repeats` calls, the last result, tracemalloc's peak, and the JVM heap peak."
    times, jvm = [], 0
    for _ in range(repeats):
        gc.collect()
        if spark is not None: _jvm_heap_peak(spark, reset=True)
        t0 = time.perf_counter(); res = fn(); times.append(time.perf_counter() - t0)
        if spark is not None: jvm = max(jvm, _jvm_heap_peak(spark))
    gc.collect(); tracemalloc.start(); fn(); peak = tracemalloc.get_traced_memory()[1]; tracemalloc.stop()
    return statistics.median(times), res, peak, jvm


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--quick', action='store_true', help="500 users x 1,000 items, 200,000 truth and train rows")
    ap.add_argument('--users', type=int, default=5_000)
    ap.add_argument('--items', type=int, default=10_000)
    ap.add_argument('--rows', type=int, default=5_000_000, help="truth rows, and train rows")
    ap.add_argument('--k', type=int, default=10)
    ap.add_argument('--master', default='local[2]', help="Spark master for the session this script starts")
    ap.add_argument('--driver-memory', default=None, help="spark.driver.memory (default: settings.ini)")
    ap.add_argument('--repeats', type=int, default=3, help="timed runs of each implementation")
    ap.add_argument('--no-train', action='store_true', help="no train table: accuracy metrics and coverage only")
    a = ap.parse_args()
    if a.quick: a.users, a.items, a.rows = 500, 1_000, 200_000
    os.environ['RECSYS_LOCAL_SPARK_MASTER'] = a.master       # settings.ini override read by spark_session()
    if a.driver_memory: os.environ['RECSYS_LOCAL_SPARK_DRIVER_MEMORY'] = a.driver_memory
    from recsys_lib.spark.session import spark_session
    from recsys_lib.spark.metrics import calc_metrics_spark

    t0 = time.perf_counter()
    truth, train, reco = make_data(n_users=a.users, n_items=a.items, n_truth=a.rows, n_train=a.rows, k=a.k)
    print(f"data: truth {len(truth):,} rows, train {len(train):,} rows{' (not used)' if a.no_train else ''}, "
          f"reco {len(reco):,} rows, {truth.user_id.nunique():,} users ({time.perf_counter() - t0:.1f} s to generate)")
    spark = spark_session()
    tmp = Path(tempfile.mkdtemp(prefix='bench_spark_metrics_'))
    try:
        for name, df in (('truth', truth), ('train', train), ('reco', reco)): df.to_parquet(tmp/f'{name}.parquet', index=False)
        S = {n: spark.read.parquet(str(tmp/f'{n}.parquet')) for n in ('truth', 'train', 'reco')}
        if a.no_train: train, S['train'] = None, None
        mem = next((int(l.split()[1]) / 2**20 for l in open('/proc/meminfo') if l.startswith('MemTotal')), float('nan'))
        print(f"{os.cpu_count()} cores, {mem:.0f} GiB; python {platform.python_version()}, numpy {np.__version__}, "
              f"pandas {pd.__version__}, Spark {spark.version} on {spark.sparkContext.master}, "
              f"driver memory {spark.conf.get('spark.driver.memory', '?')}, shuffle partitions "
              f"{spark.conf.get('spark.sql.shuffle.partitions')}; load average {os.getloadavg()[0]:.1f} at start")
        t0 = time.perf_counter(); calc_metrics_spark(S['reco'], S['truth'], k=a.k, train=S['train'])   # JIT warm-up
        print(f"first Spark call (warm-up, not timed below): {time.perf_counter() - t0:.1f} s")
        loc_t, loc, loc_mem, _ = measure(lambda: calc_metrics(reco, truth, k=a.k, train=train), a.repeats)
        sp_t, sp, sp_mem, sp_jvm = measure(lambda: calc_metrics_spark(S['reco'], S['truth'], k=a.k, train=S['train']), a.repeats, spark)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    cmp = pd.DataFrame({'local': loc, 'spark': sp, 'abs diff': (sp - loc).abs()})
    print(cmp.to_string(float_format=lambda x: f'{x:.6g}'))
    close = bool(np.allclose(sp.to_numpy(), loc.to_numpy(), rtol=0, atol=1e-9)) and list(sp.index) == list(loc.index)
    print(f"values equal to 1e-9 on every metric: {close}")
    print(f"{'':22}{'median s':>10}{'repeats':>9}{'py peak MiB':>13}{'JVM heap peak MiB':>19}{'vs local':>10}")
    print(f"{'calc_metrics (local)':22}{loc_t:10.3f}{a.repeats:9d}{loc_mem / 2**20:13.1f}{'-':>19}{1:9.0f}x")
    print(f"{'calc_metrics_spark':22}{sp_t:10.3f}{a.repeats:9d}{sp_mem / 2**20:13.1f}{sp_jvm / 2**20:19.0f}{sp_t / loc_t:9.0f}x")
    print(f"load average {os.getloadavg()[0]:.1f} at end")


if __name__ == '__main__':
    main()
