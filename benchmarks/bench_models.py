"""Model fit times (and the quality they buy) on a synthetic set shaped like MovieLens-1M.

    .venv/bin/python benchmarks/bench_models.py [--repeats 3] [--models popularity itemknn ease als]

Data: `make_synthetic(**SYNTHETIC_PRESETS['ml1m'])`, 6,040 users x 3,706 items, 1,000,000 interactions, split
leave-last-out (one test event per user). Each model is fit `--repeats` times on the training part; the script
prints the median and minimum fit seconds, the peak memory traced during one more fit, and NDCG@10 / Recall@10 on the
test events (full-catalogue ranking, seen items excluded). SASRec has its own script, `bench_sasrec.py`.
Nothing here asserts on time.
"""
from __future__ import annotations
import argparse, os, platform, statistics, time, tracemalloc

import numpy as np
import pandas as pd

from recsys_lib.data import Interactions
from recsys_lib.metrics import calc_metrics
from recsys_lib.models import model_class
from recsys_lib.split import leave_last_out
from recsys_lib.synthetic import SYNTHETIC_PRESETS, make_synthetic

PARAMS = {'popularity': {}, 'itemknn': {'neighbors': 100, 'shrink': 10}, 'ease': {'l2': 500}, 'als': {'factors': 64, 'iterations': 15}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--models', nargs='+', default=list(PARAMS), choices=list(PARAMS))
    a = ap.parse_args()
    print(f"{os.cpu_count()} cores; python {platform.python_version()}, numpy {np.__version__}")
    t0 = time.perf_counter()
    inter = Interactions.from_df(make_synthetic(**SYNTHETIC_PRESETS['ml1m']))
    split = leave_last_out(inter, n_test=1)
    print(f"data: {inter} ({time.perf_counter() - t0:.1f} s to generate and split)")
    users = split.test.df.user_id.unique()
    rows = []
    for name in a.models:
        make = lambda: model_class(name)(**PARAMS[name])
        times = []
        for _ in range(a.repeats):
            t0 = time.perf_counter(); model = make().fit(split.train); times.append(time.perf_counter() - t0)
        tracemalloc.start(); make().fit(split.train); peak = tracemalloc.get_traced_memory()[1] / 2**20; tracemalloc.stop()
        m = calc_metrics(model.recommend(users, k=10), split.test.df, k=10)
        rows.append({'model': name, 'params': PARAMS[name], 'fit median s': statistics.median(times), 'fit min s': min(times),
                     'peak MiB': peak, 'ndcg@10': m['ndcg@10'], 'recall@10': m['recall@10']})
    print(pd.DataFrame(rows).set_index('model').to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == '__main__':
    main()
