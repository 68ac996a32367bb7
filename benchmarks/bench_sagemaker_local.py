"""What `sagemaker-local`'s isolated job environment costs: a job on a cold cache (the environment is built by
`bash job.sh install`, the cloud job's install command), a job on the cached environment, and the same notebook run
locally with `recsys run` (the in-process baseline), side by side in one run.

Each job is `pipelines/train.ipynb` with the tiny preset and the popularity model, collected into a run folder. The
cold job gets an empty `RECSYS_JOB_ENVS` folder of its own; the cached jobs reuse it. Reported: median and spread of
the wall time, as multiples of the local baseline; the peak resident memory of the largest child process (the build's
pip, or the job's kernel); and the size of the job environment on disk.

    .venv/bin/python benchmarks/bench_sagemaker_local.py             # 1 cold job, 3 cached, 3 local
    .venv/bin/python benchmarks/bench_sagemaker_local.py --repeats 5
"""
import argparse, os, resource, shutil, statistics, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ['-p', 'preset', 'tiny', '-p', 'model', 'popularity']


def run(profile: str, env: dict) -> float:
    "Wall seconds of one `recsys run pipelines/train.ipynb --profile PROFILE --no-track`; raises if it fails."
    t0 = time.perf_counter()
    r = subprocess.run([str(Path(sys.executable).parent/'recsys'), 'run', str(ROOT/'pipelines'/'train.ipynb'), '--profile', profile,
                        '--no-track', *PARAMS], capture_output=True, text=True, env=env)
    if r.returncode: raise SystemExit(f"{profile} run failed: {r.stderr[-2000:]}")
    return time.perf_counter() - t0


def du(path: Path) -> int: return sum(p.lstat().st_size for p in path.rglob('*') if p.is_file() and not p.is_symlink())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--repeats', type=int, default=3, help="cached sagemaker-local jobs and local runs")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith('RECSYS_')}
        env.update(RECSYS_SETTINGS=str(ROOT/'settings.ini'), RECSYS_JOB_ENVS=str(tmp/'envs'),
                   **{f'RECSYS_{p}_{k}': str(tmp/p.lower()/k.lower()) for p in ('LOCAL', 'SAGEMAKER_LOCAL') for k in ('RUNS_DIR', 'DATA_DIR')})
        local = [run('local', env) for _ in range(args.repeats)]
        cold = run('sagemaker-local', env)
        cached = [run('sagemaker-local', env) for _ in range(args.repeats)]
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        size = du(next((tmp/'envs').glob('*/.ready')).parent) / 2**30
    base = statistics.median(local)
    print('| run | median s | min-max s | x local |\n|---|---:|---:|---:|')
    for name, times in (('local `recsys run` (baseline)', local), ('sagemaker-local, cold cache (builds the environment)', [cold]),
                        ('sagemaker-local, cached environment', cached)):
        print(f"| {name} | {statistics.median(times):.1f} | {min(times):.1f}-{max(times):.1f} | {statistics.median(times) / base:.1f} |")
    print(f"\npeak resident memory of the largest child process: {peak:.0f} MiB; job environment on disk: {size:.1f} GiB")


if __name__ == '__main__':
    main()
