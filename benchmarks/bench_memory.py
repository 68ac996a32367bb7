"""Peak memory of EASE.fit against its guard's estimate, the floor of one items x items matrix, and a Popularity fit.

Each fit runs in a fresh process (so earlier allocations neither hide nor lend to its peak), on a synthetic catalogue where every
user interacted with 1% or 30% of the items (30% makes the Gram matrix dense, the worst case). Reported per catalogue size:
the growth of the process's peak resident memory during the fit (VmHWM, reset before the fit, minus VmRSS), the estimate `ease_peak_bytes` the memory
guard refuses by (it must stay above the measurement), and both as multiples of items^2 x 4 bytes, the floor below
which no float32 EASE can go. A Popularity fit on the same data is the baseline: what every model's fit pays for the
interactions before its own work; the guard's estimate covers EASE's own work, so the last column, EASE's peak over
the larger of the two, should stay at or below 1.

    .venv/bin/python benchmarks/bench_memory.py                    # 2,000 4,000 6,000 items
    .venv/bin/python benchmarks/bench_memory.py --items 2000 8000
"""
import argparse, json, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, sys
import numpy as np, pandas as pd
from recsys_lib.data import Interactions
from recsys_lib.ease import EASE, ease_peak_bytes
from recsys_lib.models import Popularity
def status(field):
    for line in open('/proc/self/status'):
        if line.startswith(field + ':'): return int(line.split()[1]) * 1024
n_items, density, model = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]; n_users = n_items
rng = np.random.default_rng(0)
blocks = [np.nonzero(rng.random((256, n_items), dtype='float32') < density) for _ in range(0, n_users, 256)]  # no dense users x items
users = np.concatenate([u + 256 * b for b, (u, _) in enumerate(blocks)])
data = Interactions.from_df(pd.DataFrame({'user_id': users, 'item_id': np.concatenate([i for _, i in blocks])}))
del blocks, users
def fit_peak(model):
    "Growth of this process's peak resident memory while `model` fits (VmHWM reset first: building the data peaked higher)."
    with open('/proc/self/clear_refs', 'w') as f: f.write('5')
    before = status('VmRSS')
    model.fit(data)
    return status('VmHWM') - before
print(json.dumps({'items': n_items, 'interactions': len(data.df), 'peak': fit_peak(EASE(l2=500.0) if model == 'ease' else Popularity()),
                  'estimate': ease_peak_bytes(n_items, len(data.df))}))
"""


def measure(n_items: int, density: float) -> dict:
    "EASE's fit and a Popularity fit, each in a fresh process (a second fit in one process reuses the first one's freed pages)."
    def run(model):
        out = subprocess.run([sys.executable, '-c', CHILD, str(n_items), str(density), model], capture_output=True, text=True, check=True, cwd=ROOT)
        return json.loads(out.stdout.strip().splitlines()[-1])
    ease = run('ease')
    return {**ease, 'base': run('popularity')['peak']}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--items', type=int, nargs='+', default=[2000, 4000, 6000])
    ap.add_argument('--density', type=float, nargs='+', default=[0.01, 0.3], help="share of the items each user interacted with")
    args = ap.parse_args()
    print('| items | interactions | Popularity fit MiB | EASE fit MiB | EASE estimate MiB | EASE / (items^2 x 4 B) | EASE over its estimate and the shared cost |\n'
          '|---:|---:|---:|---:|---:|---:|---:|')
    for n in args.items:
        for density in args.density:
            r = measure(n, density)
            mib = {k: f"{r[k] / 2**20:.0f}" for k in ('base', 'peak', 'estimate')}
            print(f"| {n:,} | {r['interactions']:,} | {mib['base']} | {mib['peak']} | {mib['estimate']} | {r['peak'] / (n * n * 4):.2f} | "
                  f"{r['peak'] / max(r['estimate'], r['base']):.2f} |", flush=True)


if __name__ == '__main__':
    main()
