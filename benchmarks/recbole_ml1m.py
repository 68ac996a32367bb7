"""RecBole's published MovieLens-1M protocol, on a ratings file you provide, next to RecBole's published numbers.

    .venv/bin/python benchmarks/recbole_ml1m.py PATH/ratings.dat      # or u.data, ratings.csv, a RecBole .inter file

Nothing is downloaded: get MovieLens-1M from GroupLens yourself. The protocol, as in RecBole's results table:
ratings >= 3 are positives (weight 1), a random 8:1:1 split of each user's positives (seed 2020, RecBole's default),
models fit on the 80%, full ranking over all items with the user's training *and* validation items excluded,
metrics at K=10 on the test 10%. RecBole averages over test users; so do we. Published figures (RecBole, ML-1M,
this protocol): EASE NDCG@10 0.2865 / Recall@10 0.2139, BPR 0.2523 / 0.1995, ItemKNN 0.2389 / 0.1723. recsys_lib has
no BPR; ALS, the other matrix factorisation, is shown in its place for reference, not as a like-for-like row.
"""
from __future__ import annotations
import argparse, time
from pathlib import Path

import numpy as np
import pandas as pd

from recsys_lib.data import binarize, load_movielens, load_recbole
from recsys_lib.metrics import calc_metrics
from recsys_lib.models import model_class
from recsys_lib.split import random_split

PUBLISHED = {'ease': (0.2865, 0.2139), 'itemknn': (0.2389, 0.1723), 'bpr': (0.2523, 0.1995)}
# RecBole's default hyper-parameters for the two comparable models, and ours for ALS
PARAMS = {'ease': {'l2': 250.0}, 'itemknn': {'neighbors': 100, 'shrink': 0.0}, 'als': {'factors': 64, 'iterations': 15}}


def recommend_excluding(model, users, k, also_seen: pd.DataFrame) -> pd.DataFrame:
    "Top-k per user with training items masked by the model and `also_seen` (user_id, item_id) pairs removed after."
    extra = int(also_seen.groupby('user_id').size().max()) if len(also_seen) else 0
    reco = model.recommend(users, k=min(k + extra, len(model.item_map_)))
    hidden = reco.merge(also_seen[['user_id', 'item_id']].assign(_hide=True), on=['user_id', 'item_id'], how='left')['_hide'].notna()
    reco = reco[~hidden.to_numpy()].copy()
    reco['rank'] = reco.groupby('user_id').cumcount() + 1
    return reco[reco['rank'] <= k]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('ratings', type=Path, help="ratings.dat / u.data / ratings.csv of MovieLens, or a RecBole .inter file")
    ap.add_argument('--models', nargs='+', default=list(PARAMS), choices=list(PARAMS))
    ap.add_argument('--seed', type=int, default=2020)
    a = ap.parse_args()
    inter = load_recbole(a.ratings) if a.ratings.suffix == '.inter' else load_movielens(a.ratings)
    inter = binarize(inter, 3)
    split = random_split(inter, test_frac=0.1, valid_frac=0.1, seed=a.seed)
    print(f"{a.ratings}: {inter}; split {len(split.train):,} / {len(split.valid):,} / {len(split.test):,}")
    users = split.test.df.user_id.unique()
    rows = []
    for name in a.models:
        t0 = time.perf_counter()
        model = model_class(name)(**PARAMS[name]).fit(split.train)
        reco = recommend_excluding(model, users, 10, split.valid.df)
        m = calc_metrics(reco, split.test.df, k=10)
        pub = PUBLISHED.get(name, (np.nan, np.nan))
        rows.append({'model': name, 'ndcg@10': m['ndcg@10'], 'RecBole ndcg@10': pub[0],
                     'recall@10': m['recall@10'], 'RecBole recall@10': pub[1], 'seconds': time.perf_counter() - t0})
    rows.append({'model': 'bpr (RecBole only)', 'RecBole ndcg@10': PUBLISHED['bpr'][0], 'RecBole recall@10': PUBLISHED['bpr'][1]})
    print(pd.DataFrame(rows).set_index('model').to_string(float_format=lambda v: f"{v:.4f}", na_rep='-'))


if __name__ == '__main__':
    main()
