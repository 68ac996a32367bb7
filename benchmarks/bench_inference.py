"""Batch inference: users/s of EASE top-10 over the whole catalogue, against the bare lower bound, and peak memory.

    .venv/bin/python benchmarks/bench_inference.py [--users 1000000] [--items 10000] [--block-users 4096]

Data: `--users` users x `--items` items, 8 interactions per user drawn from a Zipf(1) popularity (seeded). EASE
(l2=500, float32) is fit on it; fitting is not timed. Then, side by side on the same model and the same blocks of
users:

- `batch_recommend`: score a block (sparse history @ EASE weights), mask seen items, top-10 with ties broken by
  item, write the block to Parquet, for every user, with the progress bar off;
- the lower bound: the same sparse @ dense product per block plus `np.argpartition` top-10 and a sort of the 10,
  with no masking, no tie handling, no table and no I/O.

Peak memory is tracemalloc's peak during the call (the model and its input are allocated before), for a tenth of
the users and for all of them: with scores computed block by block it should not grow with the user count.
Nothing here asserts on time.
"""
from __future__ import annotations
import argparse, os, platform, shutil, statistics, time, tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys_lib.data import IdMap, Interactions
from recsys_lib.ease import EASE
from recsys_lib.inference import batch_recommend

SCRATCH = Path(__file__).parent/'.data'


def make_interactions(n_users, n_items, per_user=8, seed=0) -> Interactions:
    "Every user with `per_user` distinct items drawn from a Zipf(1) popularity."
    rng = np.random.default_rng(seed)
    p = 1 / np.arange(1, n_items + 1); p /= p.sum()
    items = rng.choice(n_items, size=(n_users, per_user * 2), p=p)
    items.sort(axis=1)
    first = np.ones_like(items, bool); first[:, 1:] = items[:, 1:] != items[:, :-1]   # distinct per user
    first &= np.cumsum(first, axis=1) <= per_user                                       # at most per_user of them
    users = np.broadcast_to(np.arange(n_users)[:, None], items.shape)
    df = pd.DataFrame({'user_id': users[first], 'item_id': items[first]})
    return Interactions.from_df(df)


def lower_bound(model, users, k, block_users):
    "Score blocks and take the top k of each: nothing else."
    for s in range(0, len(users), block_users):
        scores = model.seen_[users[s:s + block_users]] @ model.weights_
        m = scores.shape[1]
        top = np.argpartition(scores, m - k, axis=1)[:, m - k:]
        np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), axis=1), 1)


def timed(fn):
    t0 = time.perf_counter(); fn(); return time.perf_counter() - t0


def peak_mib(fn):
    tracemalloc.start(); fn(); peak = tracemalloc.get_traced_memory()[1]; tracemalloc.stop()
    return peak / 2**20


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--users', type=int, default=1_000_000)
    ap.add_argument('--items', type=int, default=10_000)
    ap.add_argument('--block-users', type=int, default=4096)
    ap.add_argument('--k', type=int, default=10)
    ap.add_argument('--repeats', type=int, default=3, help="timed runs of each, alternating; the median is reported")
    a = ap.parse_args()
    print(f"{os.cpu_count()} cores; python {platform.python_version()}, numpy {np.__version__}")
    t0 = time.perf_counter()
    inter = make_interactions(a.users, a.items)
    print(f"data: {len(inter):,} interactions, {a.users:,} users x {a.items:,} items ({time.perf_counter() - t0:.0f} s)")
    t0 = time.perf_counter()
    model = EASE(l2=500).fit(inter)
    print(f"EASE fit: {time.perf_counter() - t0:.1f} s (not part of the comparison)")
    users = np.arange(a.users)
    out = SCRATCH/'bench_inference'
    run = lambda ids=None: batch_recommend(model, out, users=ids, k=a.k, block_users=a.block_users, progress=False)
    ours, bound = [], []
    for _ in range(a.repeats):
        ours.append(timed(run)); bound.append(timed(lambda: lower_bound(model, users, a.k, a.block_users)))
    t_ours, t_bound = statistics.median(ours), statistics.median(bound)
    small = model.user_map_.ids[:a.users // 10]
    mem_small, mem_all = peak_mib(lambda: run(small)), peak_mib(run)
    shutil.rmtree(out, ignore_errors=True)
    print(f"{'':26}{'median s':>10}{'users/s':>12}")
    print(f"{'batch_recommend':26}{t_ours:10.2f}{a.users / t_ours:12,.0f}")
    print(f"{'lower bound (matmul+topk)':26}{t_bound:10.2f}{a.users / t_bound:12,.0f}")
    print(f"throughput ratio (ours / bound): {t_bound / t_ours:.2f}")
    print(f"peak traced memory: {a.users // 10:,} users {mem_small:.0f} MiB, {a.users:,} users {mem_all:.0f} MiB "
          f"(ratio {mem_all / mem_small:.2f})")


if __name__ == '__main__':
    main()
