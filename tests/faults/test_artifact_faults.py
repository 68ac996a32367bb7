"""Damaged model artifacts and unsafe job archives are refused, with an error naming the file and the problem.

Every test breaks something real: a copy of a saved EASE model (truncated, a byte flipped, a file deleted, a newer
format), or a .tar.gz with a member that escapes its folder. The faults go through the public ways in: `load_model`,
`recsys run pipelines/batch_inference.ipynb`, and `collect_job`, which turns a SageMaker job's archives into a run.
"""
import io, json, os, shutil, subprocess, tarfile
from pathlib import Path

import nbformat
import numpy as np
import pytest

from recsys_lib.core import sha256_file, write_json
from recsys_lib.data import Interactions
from recsys_lib.ease import EASE
from recsys_lib.models import ARTIFACT_FORMAT, ArtifactError, load_model
from recsys_lib.sagemaker.local import _unpack, collect_job
from recsys_lib.synthetic import make_synthetic

from conftest import BIN, ROOT


@pytest.fixture(scope='module')
def saved(tmp_path_factory):
    "A fitted EASE model saved once; each test breaks a copy of it."
    path = tmp_path_factory.mktemp('artifact')/'ease'
    EASE().fit(Interactions.from_df(make_synthetic(n_users=100, n_items=50, n_interactions=1000, seed=0))).save(path)
    return path


# ---- damaged artifact folders

def truncate(d):
    f = d/'arrays.npz'; f.write_bytes(f.read_bytes()[:f.stat().st_size // 2])

def flip_byte(d):
    f = d/'config.json'; b = bytearray(f.read_bytes()); b[len(b) // 2] ^= 0xFF; f.write_bytes(bytes(b))

def delete(d): (d/'item_map.json').unlink()

def newer_format(d):
    f = d/'manifest.json'; m = json.loads(f.read_text()); m['format_version'] = ARTIFACT_FORMAT + 1; f.write_text(json.dumps(m))

def truncate_and_resign(d):
    "Truncate arrays.npz and write its new SHA-256 into the manifest: the loader must not trust the checksum alone."
    truncate(d)
    f = d/'manifest.json'; m = json.loads(f.read_text()); m['files']['arrays.npz'] = sha256_file(d/'arrays.npz'); f.write_text(json.dumps(m))

DAMAGE = {  # fault -> what the error must say
    'truncated': (truncate, 'arrays.npz does not match its SHA-256 in the manifest: the file is corrupted or was modified'),
    'byte_flipped': (flip_byte, 'config.json does not match its SHA-256 in the manifest'),
    'file_deleted': (delete, 'item_map.json is listed in the manifest but missing'),
    'newer_format': (newer_format, f'has artifact format {ARTIFACT_FORMAT + 1}; this recsys_lib reads format {ARTIFACT_FORMAT}'),
    'truncated_resigned': (truncate_and_resign, 'arrays.npz cannot be read'),
}


@pytest.mark.parametrize('fault', DAMAGE)
def test_damaged_artifact_is_refused(saved, tmp_path, fault):
    damage, expected = DAMAGE[fault]
    copy = shutil.copytree(saved, tmp_path/'model')
    damage(copy)
    model = None
    with pytest.raises(ArtifactError) as e: model = load_model(copy)
    assert str(copy) in str(e.value) and expected in str(e.value), str(e.value)
    assert model is None


def test_intact_artifact_loads_and_holds_no_pickle(saved):
    "The control row: the undamaged folder loads, and nothing in it needs pickle to read."
    assert isinstance(load_model(saved), EASE)
    assert sorted(p.name for p in saved.iterdir()) == ['arrays.npz', 'config.json', 'item_map.json', 'manifest.json', 'user_map.json']
    with np.load(saved/'arrays.npz', allow_pickle=False) as z: assert all(z[k].dtype != object for k in z.files)
    for f in saved.glob('*.json'): json.loads(f.read_text())


def test_batch_inference_pipeline_refuses_a_damaged_model(saved, clean_env, tmp_path):
    "`recsys run` with a corrupted `model_path`: a non-zero exit, one line saying why, nothing published."
    copy = shutil.copytree(saved, tmp_path/'model')
    flip_byte(copy)
    r = subprocess.run([str(BIN/'recsys'), 'run', str(ROOT/'pipelines'/'batch_inference.ipynb'), '-p', 'model_path', str(copy),
                        '--no-progress', '--no-track'], capture_output=True, text=True, env=clean_env, timeout=600)
    assert r.returncode != 0
    reason = [line for line in r.stderr.splitlines() if line.startswith('recsys run:')]
    assert len(reason) == 1, r.stderr[-3000:]
    assert 'ArtifactError' in reason[0] and f'{copy}/config.json does not match its SHA-256' in reason[0], reason[0]
    assert not [p for p in (tmp_path/'data').rglob('*') if p.is_file()]  # neither published/ nor anything else
    manifest, = (tmp_path/'runs'/'batch_inference').glob('*/manifest.json')
    assert json.loads(manifest.read_text())['status'] == 'failed'


# ---- unsafe .tar.gz archives (what SageMaker hands back as model.tar.gz / output.tar.gz)

def member(name, kind=tarfile.REGTYPE, link=''):
    ti = tarfile.TarInfo(name); ti.type, ti.linkname = kind, link
    if kind == tarfile.REGTYPE: ti.size = 1
    return ti

ESCAPES = {  # outside folder -> (the bad member, what the error must say)
    'absolute_path': lambda out: (member(f'{out}/abs.txt'), f"member '{out}/abs.txt' has an absolute path"),
    'parent_path': lambda out: (member('../outside/escape.txt'), "'../outside/escape.txt' would be extracted to"),
    'symlink_absolute': lambda out: (member('evil', tarfile.SYMTYPE, str(out)), "'evil' is a link to an absolute path"),
    'symlink_relative': lambda out: (member('evil', tarfile.SYMTYPE, '../outside'), f"'evil' would link to '{out}'"),
    'hardlink': lambda out: (member('evil', tarfile.LNKTYPE, '../outside/secret.txt'), f"'evil' would link to '{out}/secret.txt'"),
}


def archive(path, bad, model=None) -> Path:
    "A real .tar.gz: the model folder (or one harmless file), then the member `bad`."
    with tarfile.open(path, 'w:gz') as tf:
        if model: tf.add(model, arcname='.')
        else: tf.addfile(member('ok.txt'), io.BytesIO(b'x'))
        if bad is not None: tf.addfile(bad, io.BytesIO(b'x' * bad.size))
    return path


def snapshot(root) -> dict:
    "Every path under `root`, with its size and hard-link count."
    return {p: (p.lstat().st_size, p.lstat().st_nlink) for p in Path(root).rglob('*')}


@pytest.mark.parametrize('escape', ESCAPES)
def test_unsafe_archive_is_refused_before_anything_is_written(tmp_path, escape):
    outside = tmp_path/'outside'
    outside.mkdir(); (outside/'secret.txt').write_text('secret')
    bad, expected = ESCAPES[escape](outside)
    src = archive(tmp_path/'model.tar.gz', bad)
    before = snapshot(tmp_path)
    with pytest.raises(ArtifactError) as e: _unpack(src, tmp_path/'dst')
    assert f'refusing to unpack {src}: ' in str(e.value) and expected in str(e.value), str(e.value)
    assert snapshot(tmp_path) == before  # no dst/, not even ok.txt, and no new file or link outside it


def job_output(path) -> Path:
    "output.tar.gz of a training job that succeeded and asks to register its model as 'faults'."
    run = path.parent/'job-output'
    run.mkdir()
    write_json(run/'manifest.json', {'run_id': 'train/20260101T000000Z-faults', 'status': 'succeeded'})
    write_json(run/'job.json', {'status': 'succeeded', 'mode': 'training'})
    write_json(run/'params.json', {'registered_model': 'faults'})
    write_json(run/'metrics.json', {'test_ndcg@10': 0.1})
    nbformat.write(nbformat.v4.new_notebook(), run/'train.ipynb')
    with tarfile.open(path, 'w:gz') as tf: tf.add(run, arcname='.')
    return path


def test_collect_job_refuses_a_malicious_model_archive_and_registers_nothing(saved, clean_env, tmp_path, monkeypatch):
    "The SageMaker path: a job's model.tar.gz with a link out of the folder gives a failed run and no model version."
    for k in [k for k in os.environ if k.startswith('RECSYS_')]: monkeypatch.delenv(k)
    for k, v in clean_env.items():
        if k.startswith('RECSYS_'): monkeypatch.setenv(k, v)
    from recsys_lib import tracking
    from recsys_lib.pipeline import register_run
    output = job_output(tmp_path/'output.tar.gz')
    bad = archive(tmp_path/'model.tar.gz', member('evil', tarfile.SYMTYPE, '/etc'), model=saved)
    res = collect_job(output, bad, tmp_path/'runs', 'job-bad', exit_code=0, backend='sagemaker-local')
    assert res.status == 'failed' and f"refusing to unpack {bad}: 'evil' is a link to an absolute path" in res.reason, res.reason
    assert not (res.run_dir/'model').exists()
    assert json.loads((res.run_dir/'manifest.json').read_text())['status'] == 'failed'
    assert 'version' not in register_run(res.run_dir)
    # the control: the same job with the clean archive registers, and as version 1, so the bad one registered nothing
    clean = archive(tmp_path/'clean.tar.gz', None, model=saved)
    ok = collect_job(output, clean, tmp_path/'runs', 'job-ok', exit_code=0, backend='sagemaker-local')
    assert ok.status == 'succeeded' and isinstance(load_model(ok.run_dir/'model'), EASE)
    assert register_run(ok.run_dir)['version'] == 1 and len(tracking.list_versions('faults')) == 1
