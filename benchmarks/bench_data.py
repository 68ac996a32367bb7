"""Reading a user's file: recsys_lib.data.read_interactions against pandas' own typed reader.

    .venv/bin/python benchmarks/bench_data.py [--rows 5000000] [--repeats 3]

A MovieLens-20M-shaped CSV (userId, movieId, rating in half stars, unix timestamp; ids up to 140,000 and 27,000),
written once to a temporary folder. `read_interactions` reads every field as text (so no id is changed before the
round-trip rule runs), types the ids, weights and times, and validates; the baseline is what the pipelines did
before: `pd.read_csv` with type inference, then `Interactions.from_df` (which merges '007' and '7'). The script
checks that both give the same fingerprint on this all-integer file, then prints median wall time, the ratio and
peak traced memory. Nothing here asserts on time.
"""
from __future__ import annotations
import argparse, gc, os, platform, statistics, tempfile, time, tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

from recsys_lib.data import Interactions, read_interactions

COLUMNS = {'userId': 'user_id', 'movieId': 'item_id'}


def write_file(path: Path, rows: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    pd.DataFrame({'userId': rng.integers(1, 140_000, rows), 'movieId': rng.integers(1, 27_000, rows),
                  'rating': rng.integers(1, 11, rows) / 2, 'timestamp': rng.integers(800_000_000, 1_500_000_000, rows)}
                 ).to_csv(path, index=False)
    return path


def recsys_reader(path): return read_interactions(path, columns=COLUMNS, duplicates='keep')
def pandas_reader(path):
    return Interactions.from_df(pd.read_csv(path), columns={**COLUMNS, 'rating': 'weight'}, duplicates='keep')


def measure(fn, path, repeats: int) -> dict:
    times = []
    for _ in range(repeats):
        gc.collect(); t = time.perf_counter(); fn(path); times.append(time.perf_counter() - t)
    gc.collect(); tracemalloc.start(); fn(path); peak = tracemalloc.get_traced_memory()[1]; tracemalloc.stop()
    return {'median_s': statistics.median(times), 'peak_mib': peak / 2**20}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--rows', type=int, default=5_000_000)
    ap.add_argument('--repeats', type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = write_file(Path(d)/'ratings.csv', a.rows)
        print(f"{a.rows:,} rows, {path.stat().st_size / 2**20:.0f} MiB CSV; {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores, pandas {pd.__version__}")
        assert recsys_reader(path).fingerprint() == pandas_reader(path).fingerprint()
        res = {name: measure(fn, path, a.repeats) for name, fn in (('read_interactions', recsys_reader), ('pd.read_csv + from_df', pandas_reader))}
    base = res['pd.read_csv + from_df']['median_s']
    for name, r in res.items():
        print(f"{name:24s} median {r['median_s']:6.2f} s  ({r['median_s'] / base:4.2f}x the pandas baseline)  peak {r['peak_mib']:6.0f} MiB")


if __name__ == '__main__':
    main()
