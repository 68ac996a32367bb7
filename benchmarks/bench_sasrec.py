"""SASRec (recsys_lib.sasrec) on a MovieLens-1M-shaped synthetic set: seconds per epoch, peak memory, NDCG@10 vs EASE.

    .venv/bin/python benchmarks/bench_sasrec.py [--epochs 20] [--device auto|cpu|cuda] [--preset ml1m]
        [--max-len 200] [--hidden 64] [--layers 2] [--heads 2] [--batch-size 128] [--lr 1e-3] [--patience 5]
        [--precision auto] [--no-refit] [--threads N]

Data: `make_synthetic(**SYNTHETIC_PRESETS[preset])` (ml1m: 6,040 users x 3,706 items, 1M rows) with its default
`sequential_strength`, split by `leave_last_out(n_test=1, n_valid=1)`.

Protocol (the SASRec paper's leave-one-out with full ranking, seen items excluded):
1. SASRec is fit on train with early stopping on valid (NDCG@10, at most --epochs epochs); this gives the seconds per
   epoch (training plus the validation pass) and the validation NDCG@10 of the best epoch.
2. Unless --no-refit: SASRec is refit on train + valid for the best number of epochs, without validation, and
   evaluated on test with `calc_metrics`; EASE and Popularity are fit on the same train + valid. The test input thus
   contains the validation event, as in the paper.
   With --no-refit, the step-1 model and EASE/Popularity fit on train are evaluated on valid instead (cheaper, but
   valid also chose SASRec's epoch, so it flatters SASRec slightly).

Peak memory: the process's peak RSS (ru_maxrss), and on CUDA the peak of allocated GPU memory. Nothing here
asserts on time.
"""
from __future__ import annotations
import argparse, platform, resource, sys, time

import numpy as np
import pandas as pd


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--epochs', type=int, default=20, help='at most this many epochs in step 1')
    ap.add_argument('--device', choices=('auto', 'cpu', 'cuda'), default='auto', help='Trainer accelerator')
    ap.add_argument('--preset', default='ml1m', help='SYNTHETIC_PRESETS key')
    ap.add_argument('--max-len', type=int, default=200)
    ap.add_argument('--hidden', type=int, default=64)
    ap.add_argument('--layers', type=int, default=2)
    ap.add_argument('--heads', type=int, default=2)
    ap.add_argument('--batch-size', type=int, default=128)
    ap.add_argument('--lr', type=float, default=1e-3)
    ap.add_argument('--dropout', type=float, default=0.2)
    ap.add_argument('--patience', type=int, default=5)
    ap.add_argument('--precision', default='auto', help="Trainer precision; 'auto': bf16-mixed on CUDA with bf16, else 32-true")
    ap.add_argument('--ease-l2', type=float, default=500.0)
    ap.add_argument('--no-refit', action='store_true', help='evaluate on valid instead of refitting for test')
    ap.add_argument('--threads', type=int, default=None, help='torch intra-op threads (default: torch decides)')
    ap.add_argument('--progress', action='store_true', help='show the Lightning progress bar')
    args = ap.parse_args(argv)

    import torch
    from recsys_lib.data import Interactions
    from recsys_lib.synthetic import make_synthetic, SYNTHETIC_PRESETS
    from recsys_lib.split import leave_last_out
    from recsys_lib.metrics import calc_metrics
    from recsys_lib.models import Popularity
    from recsys_lib.ease import EASE
    from recsys_lib.sasrec import SASRec, inference_device, resolve_precision

    if args.threads: torch.set_num_threads(args.threads)
    accelerator = {'auto': 'auto', 'cpu': 'cpu', 'cuda': 'gpu'}[args.device]
    if args.device == 'cuda' and not torch.cuda.is_available(): sys.exit('--device cuda: no CUDA device is available')
    dev = inference_device(accelerator)
    print(f"python {platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} torch threads, "
          f"device {torch.cuda.get_device_name() if dev.type == 'cuda' else dev.type}, "
          f"precision {resolve_precision(args.precision, accelerator)}")

    t = time.perf_counter()
    params = SYNTHETIC_PRESETS[args.preset]
    inter = Interactions.from_df(make_synthetic(**params))
    split = leave_last_out(inter, n_test=1, n_valid=1)
    print(f"data: {args.preset} {params}: {inter} ({time.perf_counter() - t:.1f} s)")
    print(split.summary().to_string())

    config = dict(max_len=args.max_len, n_layers=args.layers, n_heads=args.heads, hidden=args.hidden, dropout=args.dropout,
                  lr=args.lr, batch_size=args.batch_size, patience=args.patience, seed=0, accelerator=accelerator,
                  precision=args.precision, progress_bar=args.progress)
    print(f"SASRec config: {config}")
    if dev.type == 'cuda': torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    sas = SASRec(**config, max_epochs=args.epochs).fit(split.train, split.valid)
    fit_s = time.perf_counter() - t
    h = sas.history_
    print(h.round(4).to_string(index=False))
    per_epoch = h['seconds'].iloc[1:] if len(h) > 1 else h['seconds']  # the first epoch includes warm-up
    print(f"step 1: {len(h)} epochs in {fit_s:.1f} s; seconds/epoch (train + validation) median {per_epoch.median():.2f}, "
          f"first {h['seconds'].iloc[0]:.2f}; best epoch {sas.best_epoch_}, val NDCG@10 {h['val_ndcg@10'].max():.4f}; "
          f"trainer {sas.trainer_config_}")

    cols = ['ndcg@10', 'recall@10', 'coverage@10']
    if args.no_refit:
        users, truth, base = split.valid.df.user_id.unique(), split.valid.df, split.train
        models = {'Popularity': Popularity().fit(base), 'EASE': EASE(l2=args.ease_l2).fit(base), 'SASRec': sas}
        where = 'valid (models fit on train)'
    else:
        base = inter.subset(~inter.df.index.isin(split.test.df.index))
        users, truth = split.test.df.user_id.unique(), split.test.df
        t = time.perf_counter()
        final = SASRec(**config, max_epochs=sas.best_epoch_).fit(base)
        print(f"step 2: refit on train + valid for {sas.best_epoch_} epochs in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        ease = EASE(l2=args.ease_l2).fit(base)
        print(f"EASE fit in {time.perf_counter() - t:.1f} s")
        models = {'Popularity': Popularity().fit(base), 'EASE': ease, 'SASRec': final}
        where = 'test (models fit on train + valid)'
    table = {}
    for name, m in models.items():
        t = time.perf_counter()
        reco = m.recommend(users, k=10)
        table[name] = calc_metrics(reco, truth, k=10)[cols]
        print(f"{name}: recommend for {len(users):,} users in {time.perf_counter() - t:.1f} s")
    print(f"\nfull-ranking metrics on {where}:")
    print(pd.DataFrame(table).T.round(4).to_string())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    print(f"\npeak RSS {rss:.2f} GiB" + (f"; peak CUDA allocated {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if dev.type == 'cuda' else ''))


if __name__ == '__main__':
    main()
