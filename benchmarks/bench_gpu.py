"""One command for the GPU paths (`make bench-gpu`): SASRec training, batch scoring and fresh-history latency on CUDA,
each next to the same work on the CPU in the same run, in one table. Refuses with exit status 2 and one line on a
machine without CUDA.

    .venv/bin/python benchmarks/bench_gpu.py [--epochs 3] [--cpu-epochs 1] [--requests 500]

Data: `make_synthetic(**SYNTHETIC_PRESETS['ml1m'], seed=0)` (MovieLens-1M-shaped: 6,040 users x 3,706 items, 1M rows).

1. SASRec (hidden 64, 2 layers, 2 heads, `max_len` 200, batch 128; precision 'auto': bf16-mixed on a CUDA card with
   bf16, else 32-true) fit without validation for --epochs epochs on CUDA and --cpu-epochs on the CPU: seconds per
   epoch (median over the epochs after the first on CUDA, which includes CUDA's start-up).
2. `batch_recommend` of every user, top-10, seen items excluded, for EASE (l2 500) and ItemKNN (100 neighbours):
   backend 'numpy' on the CPU against backend 'torch' on CUDA (scores from the model, masking and top-k on the card):
   users per second, best of three.
3. Fresh-history serving: the server's answer path (`ServedModel.answer`, what `recsys serve` runs per request,
   without HTTP) for one new user with 20 request-time events, scored by the SASRec of step 1 on CUDA and on the CPU
   (one intra-op thread, as the server runs it): p50 and p99 over --requests requests after 50 warm-up ones.

Peak GPU memory is torch's peak of allocated memory during each step. Nothing is asserted on time; the figures and
the card's name go to benchmarks/README.md by hand.
"""
from __future__ import annotations
import argparse, platform, sys, tempfile, time
from pathlib import Path

import numpy as np


def cuda_problem() -> str | None:
    "Why this machine cannot run the GPU benchmark, or None when it can."
    try: import torch
    except ModuleNotFoundError: return "torch is not installed: pip install 'recsys_lib[train]' (make install does)"
    if not torch.cuda.is_available():
        return (f"no CUDA device: torch {torch.__version__} (CUDA build: {torch.version.cuda or 'none, a CPU-only wheel'}) "
                "sees none; run it on a machine with an NVIDIA GPU and a CUDA build of torch (pip's Linux wheels are)")
    return None


def peak_gib(torch) -> float:
    return torch.cuda.max_memory_allocated() / 2**30


def sasrec_epochs(inter, accelerator: str, epochs: int, seed: int):
    "The fitted SASRec and its seconds per epoch (median over epochs after the first when there are several)."
    from recsys_lib.sasrec import SASRec
    model = SASRec(max_len=200, hidden=64, n_layers=2, n_heads=2, batch_size=128, max_epochs=epochs, seed=seed,
                   accelerator=accelerator, progress_bar=False).fit(inter)
    seconds = model.history_['seconds'].to_numpy()
    return model, float(np.median(seconds[1:] if len(seconds) > 1 else seconds))


def batch_users_per_second(model, backend: str, device: str, tmp: Path) -> float:
    from recsys_lib.inference import batch_recommend
    best = 0.0
    for i in range(3):
        t = time.perf_counter()
        batch_recommend(model, tmp/f'{model.name}-{backend}-{i}', k=10, backend=backend, device=device, progress=False)
        best = max(best, len(model.user_map_) / (time.perf_counter() - t))
    return best


def answer_latency(model, history: list, requests: int) -> tuple[float, float]:
    "p50 and p99 in ms of the server's answer for one new user with `history`."
    from recsys_lib.serve import RecommendRequest, ServedModel
    served = ServedModel(model, 'bench')
    req = RecommendRequest(user_id=-1, history=history, k=10)
    times = []
    for i in range(50 + requests):
        t = time.perf_counter()
        served.answer(req)
        if i >= 50: times.append(time.perf_counter() - t)
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 99) * 1e3)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--epochs', type=int, default=3, help="SASRec epochs on CUDA")
    ap.add_argument('--cpu-epochs', type=int, default=1, help="SASRec epochs on the CPU (the slow side)")
    ap.add_argument('--requests', type=int, default=500, help="fresh-history requests measured per device")
    ap.add_argument('--seed', type=int, default=0)
    args = ap.parse_args(argv)
    if why := cuda_problem():
        print(f"bench-gpu: {why}", file=sys.stderr)
        return 2
    import torch
    from recsys_lib.data import Interactions
    from recsys_lib.ease import EASE
    from recsys_lib.itemknn import ItemKNN
    from recsys_lib.synthetic import SYNTHETIC_PRESETS, make_synthetic

    card = torch.cuda.get_device_name(0)
    start = time.perf_counter()
    print(f"{card}; torch {torch.__version__} (CUDA {torch.version.cuda}), bf16 {torch.cuda.is_bf16_supported()}; "
          f"{platform.processor() or platform.machine()}, torch CPU threads {torch.get_num_threads()}", flush=True)
    inter = Interactions.from_df(make_synthetic(**SYNTHETIC_PRESETS['ml1m'], seed=args.seed))
    rows = []  # (task, measure, cpu, cuda, peak GPU GiB)

    torch.cuda.reset_peak_memory_stats()
    sas_gpu, gpu_epoch = sasrec_epochs(inter, 'gpu', args.epochs, args.seed)
    sas_peak = peak_gib(torch)
    _, cpu_epoch = sasrec_epochs(inter, 'cpu', args.cpu_epochs, args.seed)
    rows.append(("SASRec fit, ml1m (max_len 200)", "s / epoch", cpu_epoch, gpu_epoch, sas_peak))
    print(f"  SASRec: {cpu_epoch:.1f} s/epoch on the CPU, {gpu_epoch:.1f} on CUDA ({time.perf_counter() - start:.0f} s so far)", flush=True)

    with tempfile.TemporaryDirectory(prefix='recsys-bench-gpu-') as d:
        for model in (EASE(l2=500.0).fit(inter), ItemKNN(neighbors=100).fit(inter)):
            cpu = batch_users_per_second(model, 'numpy', 'cpu', Path(d))
            torch.cuda.reset_peak_memory_stats()
            gpu = batch_users_per_second(model, 'torch', 'cuda', Path(d))
            rows.append((f"batch_recommend {model.name}, all users, top-10", "users / s", cpu, gpu, peak_gib(torch)))
            print(f"  {model.name}: {cpu:,.0f} users/s numpy on the CPU, {gpu:,.0f} torch on CUDA", flush=True)

    codes = inter.to_sequences()
    history = inter.item_map.to_ids(codes.items[codes.offsets[0]:codes.offsets[1]][-20:]).tolist()
    torch.cuda.reset_peak_memory_stats()
    gpu50, gpu99 = answer_latency(sas_gpu, history, args.requests)
    gpu_peak = peak_gib(torch)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as `recsys serve` runs torch
    sas_gpu.set_params(accelerator='cpu')
    cpu50, cpu99 = answer_latency(sas_gpu, history, args.requests)
    torch.set_num_threads(threads)
    rows.append(("fresh-history answer, SASRec, 20 events", "p50 ms", cpu50, gpu50, gpu_peak))
    rows.append(("fresh-history answer, SASRec, 20 events", "p99 ms", cpu99, gpu99, gpu_peak))

    print(f"\n{'task':44} {'measure':10} {'CPU':>10} {'CUDA':>10} {'CUDA vs CPU':>12} {'peak GPU GiB':>13}")
    for task, measure, cpu, gpu, peak in rows:
        faster = cpu / gpu if measure.startswith(('s ', 'p')) else gpu / cpu  # times: lower is better; rates: higher
        print(f"{task:44} {measure:10} {cpu:>10,.2f} {gpu:>10,.2f} {faster:>11.1f}x {peak:>13.2f}")
    print(f"\n{card}: {time.perf_counter() - start:.0f} s in all")
    return 0


if __name__ == '__main__': sys.exit(main())
