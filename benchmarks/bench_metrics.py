"""Top-K metrics: recsys_lib.metrics against two plain pandas merge/groupby implementations.

    .venv/bin/python benchmarks/bench_metrics.py [--ids int|sparse|str] [--no-train] [--repeats 5] [--base-repeats 3]

5,000 users x 10,000 items; 5,000,000 ground-truth rows and 5,000,000 train rows (unique (user, item) pairs,
items drawn from a Zipf(1) popularity, per-user counts log-normal, rows shuffled); a top-10 list per user drawn
from the same popularity, so that hit rates are realistic. All implementations compute every metric at K=10
(precision, recall, NDCG, MAP, MRR, hit rate, coverage, and with train novelty and ARP) on the same tables: the
single-pass baseline derives every metric from one merge; the per-metric baseline calls one function per metric,
each repeating the merge, the way microsoft recommenders' pandas evaluation is used. The script checks that the
values agree, then prints median wall time, the speed-up and peak traced memory.
Nothing here asserts on time.
"""
from __future__ import annotations
import argparse, gc, os, platform, statistics, time, tracemalloc

import numpy as np
import pandas as pd

from recsys_lib.metrics import calc_metrics

# ---------------------------------------------------------------------------------------------- data

def _gumbel_topk(rng, logp, n_rows, counts, chunk=250):
    "For each row r, `counts[r]` distinct columns drawn with probability ~ exp(logp), without replacement."
    users, items = [], []
    for s in range(0, n_rows, chunk):
        e = min(s + chunk, n_rows)
        g = logp - np.log(-np.log(rng.random((e - s, len(logp)))))  # Gumbel top-k = weighted sampling w/o replacement
        order = np.argsort(-g, axis=1)
        for j in range(e - s):
            users.append(np.full(counts[s + j], s + j)); items.append(order[j, :counts[s + j]])
    return np.concatenate(users), np.concatenate(items)

def _counts(rng, n_users, n_rows, cap):
    "Per-user row counts: log-normal activity, at least 1, at most `cap`, summing to `n_rows`."
    w = rng.lognormal(0, 1, n_users)
    c = np.clip(np.round(w / w.sum() * n_rows), 1, cap).astype(np.int64)
    while (d := n_rows - c.sum()) != 0:
        np.add.at(c, rng.integers(0, n_users, abs(d)), np.sign(d))
        c = np.clip(c, 1, cap)
    return c

def make_data(n_users=5_000, n_items=10_000, n_truth=5_000_000, n_train=5_000_000, k=10, ids='int', seed=0):
    "truth, train and a top-`k` reco table (user_id, item_id, rank), as in the module docstring."
    rng = np.random.default_rng(seed)
    logp = -np.log(np.arange(1, n_items + 1))[rng.permutation(n_items)]   # Zipf(1) popularity, shuffled over ids
    def table(n_rows):
        u, i = _gumbel_topk(rng, logp, n_users, _counts(rng, n_users, n_rows, n_items // 2))
        perm = rng.permutation(len(u))
        return u[perm], i[perm]
    tu, ti = table(n_truth)
    su, si = table(n_train)
    ru, ri = _gumbel_topk(rng, logp, n_users, np.full(n_users, k))
    rank = np.tile(np.arange(1, k + 1), n_users)
    if ids == 'int': uid, iid = np.arange(n_users), np.arange(n_items)             # compact integer ids
    elif ids == 'sparse':                                                          # arbitrary 64-bit ids
        uid = rng.choice(2**62, n_users, replace=False); iid = rng.choice(2**62, n_items, replace=False)
    elif ids == 'str':                                                             # 'u000042', 'i000042'
        uid = np.array([f'u{x:06d}' for x in range(n_users)], dtype=object)
        iid = np.array([f'i{x:06d}' for x in range(n_items)], dtype=object)
    else: raise ValueError(ids)
    mk = lambda u, i, **kw: pd.DataFrame({'user_id': uid[u], 'item_id': iid[i], **kw})
    return mk(tu, ti), mk(su, si), mk(ru, ri, rank=rank)

# ---------------------------------------------------------------------------------------------- baseline

def _beyond_accuracy(top, truth, k, train):
    "Coverage, novelty and ARP of the top-K rows, with pandas (shared by both baselines)."
    catalog = (train['item_id'] if train is not None else pd.concat([truth['item_id'], top['item_id']])).unique()
    res = {f'coverage@{k}': top.loc[top['item_id'].isin(catalog), 'item_id'].nunique() / len(catalog)}
    if train is None: return res
    n_train_users = train['user_id'].nunique()
    item_users = train.drop_duplicates(['user_id', 'item_id']).groupby('item_id').size().rename('item_users')
    item_rows = train.groupby('item_id').size().rename('item_rows')
    pop = top.join(item_users, on='item_id').join(item_rows, on='item_id')
    res[f'novelty@{k}'] = (-np.log2(pop['item_users'].fillna(1) / n_train_users)).mean()
    res[f'arp@{k}'] = pop['item_rows'].fillna(0).groupby(pop['user_id']).mean().mean()
    return res

def _top(reco, truth, k):
    "The evaluated rows: ranked <= k, of users with ground truth."
    top = reco[reco['rank'] <= k]
    return top[top['user_id'].isin(truth['user_id'])]

def baseline_metrics(reco, truth, k=10, train=None):
    "Every metric from one merge of the top-K rows with truth, then groupby user: a single-pass pandas version."
    truth = truth[['user_id', 'item_id']].drop_duplicates()
    top = _top(reco, truth, k)
    n_rel = truth.groupby('user_id').size().rename('n_rel')
    hits = top.merge(truth, on=['user_id', 'item_id'], how='inner').sort_values(['user_id', 'rank'])
    hits['n_hit'] = hits.groupby('user_id').cumcount() + 1
    hits['dcg'] = 1 / np.log2(hits['rank'] + 1)
    hits['prec'] = hits['n_hit'] / hits['rank']
    per = hits.groupby('user_id').agg(hits=('rank', 'size'), dcg=('dcg', 'sum'), ap=('prec', 'sum'), first=('rank', 'min'))
    per = n_rel.to_frame().join(per, how='left').fillna(0)
    ideal = np.minimum(per['n_rel'], k).astype(int)
    idcg = np.cumsum(1 / np.log2(np.arange(2, k + 2)))[ideal - 1]
    res = {f'precision@{k}': (per['hits'] / k).mean(),
           f'recall@{k}': (per['hits'] / per['n_rel']).mean(),
           f'ndcg@{k}': (per['dcg'] / idcg).mean(),
           f'map@{k}': (per['ap'] / ideal).mean(),
           f'mrr@{k}': (1 / per['first']).where(per['first'] > 0, 0).mean(),
           f'hit_rate@{k}': (per['hits'] > 0).mean()}
    return pd.Series({**res, **_beyond_accuracy(top, truth, k, train)})

# The way microsoft recommenders' python_evaluation is used: one function per metric, each repeating the shared
# first step (common users, merge of the top-K rows with truth, hit and relevant counts per user).

def _merge_ranking_true_pred(truth, top):
    "The per-call first step: restrict both tables to common users, merge, count hits and relevant items."
    common = set(truth['user_id']).intersection(set(top['user_id']))
    t, p = truth[truth['user_id'].isin(common)], top[top['user_id'].isin(common)]
    hit = pd.merge(p, t, on=['user_id', 'item_id'])[['user_id', 'item_id', 'rank']]
    counts = pd.merge(hit.groupby('user_id', as_index=False).size().rename(columns={'size': 'hit'}),
                      t.groupby('user_id', as_index=False).size().rename(columns={'size': 'actual'}), on='user_id')
    return hit, counts, len(common), t

def _precision(truth, top, k): _, c, n, _ = _merge_ranking_true_pred(truth, top); return (c['hit'] / k).sum() / n
def _recall(truth, top, k): _, c, n, _ = _merge_ranking_true_pred(truth, top); return (c['hit'] / c['actual']).sum() / n
def _hit_rate(truth, top, k): _, c, n, _ = _merge_ranking_true_pred(truth, top); return (c['hit'] > 0).sum() / n

def _mrr(truth, top, k):
    hit, _, n, _ = _merge_ranking_true_pred(truth, top)
    return (1 / hit.groupby('user_id')['rank'].min()).sum() / n

def _map(truth, top, k):
    hit, c, n, _ = _merge_ranking_true_pred(truth, top)
    hit = hit.sort_values(['user_id', 'rank'])
    hit['rr'] = (hit.groupby('user_id').cumcount() + 1) / hit['rank']
    per = hit.groupby('user_id', as_index=False)['rr'].sum().merge(c, on='user_id')
    return (per['rr'] / per['actual'].clip(upper=k)).sum() / n

def _ndcg(truth, top, k):
    hit, _, _, t = _merge_ranking_true_pred(truth, top)
    dcg = hit.merge(t, on=['user_id', 'item_id'], how='outer')      # every relevant row, rank NaN where missed
    dcg['dcg'] = 1 / np.log2(1 + dcg['rank'])
    dcg['irank'] = dcg.groupby('user_id').cumcount() + 1
    dcg['idcg'] = 1 / np.log2(1 + dcg['irank'])
    per = dcg.groupby('user_id').agg(dcg=('dcg', 'sum'))
    per['idcg'] = dcg[dcg['irank'] <= k].groupby('user_id')['idcg'].sum()
    return (per['dcg'] / per['idcg']).mean()

def per_metric_baseline(reco, truth, k=10, train=None):
    "One call per metric, as a user of microsoft recommenders' pandas evaluation writes it."
    truth = truth[['user_id', 'item_id']].drop_duplicates()
    top = _top(reco, truth, k)
    res = {f'{name}@{k}': fn(truth, top, k) for name, fn in
           [('precision', _precision), ('recall', _recall), ('ndcg', _ndcg), ('map', _map), ('mrr', _mrr), ('hit_rate', _hit_rate)]}
    return pd.Series({**res, **_beyond_accuracy(top, truth, k, train)})

# ---------------------------------------------------------------------------------------------- harness

def measure(fn, repeats):
    "Median wall seconds over `repeats` calls, the last result, and tracemalloc's peak (separate call)."
    times = []
    for _ in range(repeats):
        gc.collect(); t0 = time.perf_counter(); res = fn(); times.append(time.perf_counter() - t0)
    gc.collect(); tracemalloc.start(); fn(); peak = tracemalloc.get_traced_memory()[1]; tracemalloc.stop()
    return statistics.median(times), res, peak

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--ids', default='int', choices=['int', 'sparse', 'str'], help="id type of users and items")
    ap.add_argument('--repeats', type=int, default=5, help="timed runs of recsys_lib.metrics")
    ap.add_argument('--base-repeats', type=int, default=3, help="timed runs of the pandas baseline")
    ap.add_argument('--no-train', action='store_true', help="no train table: accuracy metrics and coverage only")
    ap.add_argument('--k', type=int, default=10)
    a = ap.parse_args()
    t0 = time.perf_counter()
    truth, train, reco = make_data(k=a.k, ids=a.ids)
    print(f"data: truth {len(truth):,} rows, train {len(train):,} rows{' (not used)' if a.no_train else ''}, "
          f"reco {len(reco):,} rows, {truth.user_id.nunique():,} users, ids={a.ids} "
          f"({time.perf_counter() - t0:.1f} s to generate)")
    if a.no_train: train = None
    mem = next((int(l.split()[1]) / 2**20 for l in open('/proc/meminfo') if l.startswith('MemTotal')), float('nan'))
    print(f"{os.cpu_count()} cores, {mem:.0f} GiB; python {platform.python_version()}, numpy {np.__version__}, "
          f"pandas {pd.__version__}")
    ours_t, ours, ours_mem = measure(lambda: calc_metrics(reco, truth, k=a.k, train=train), a.repeats)
    runs = {'recsys_lib': (ours_t, ours, ours_mem, a.repeats)}
    for name, fn in [('single-pass pandas', baseline_metrics), ('per-metric pandas', per_metric_baseline)]:
        runs[name] = (*measure(lambda: fn(reco, truth, k=a.k, train=train), a.base_repeats), a.base_repeats)
    cmp = pd.DataFrame({name: r[1] for name, r in runs.items()})
    close = all(np.allclose(cmp['recsys_lib'], cmp[c], rtol=1e-9, atol=1e-12) for c in cmp.columns[1:])
    print(cmp.to_string(float_format=lambda x: f'{x:.6f}'))
    print(f"values identical (np.allclose on every metric, every implementation): {close}")
    print(f"{'':20}{'median s':>10}{'repeats':>9}{'peak MiB':>10}{'speed-up':>10}")
    for name, (t, _, mem, reps) in runs.items():
        print(f"{name:20}{t:10.4f}{reps:9d}{mem / 2**20:10.1f}{t / ours_t:9.0f}x")

if __name__ == '__main__':
    main()
