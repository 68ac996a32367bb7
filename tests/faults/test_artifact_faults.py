"""Damaged model artifacts and unsafe job archives are refused, with an error naming the file and the problem.

Every test breaks something real: a copy of a saved EASE model (truncated, a byte flipped, a file deleted, a newer
format), a saved Popularity, ItemKNN or EASE model edited by hand and re-signed (links out of the folder, manifests
and configs of the wrong shape, arrays missing or of the wrong size), or a .tar.gz with a member that escapes its folder. The faults go through the public ways in: `load_model`,
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
from recsys_lib.itemknn import ItemKNN
from recsys_lib.models import ARTIFACT_FORMAT, ArtifactError, Popularity, load_model
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


# ---- artifacts edited by hand: whoever edits a file also writes its new SHA-256 into the manifest

@pytest.fixture(scope='module')
def models(tmp_path_factory):
    "One small fitted model of each kind, saved once; each test tampers with a copy."
    train = Interactions.from_df(make_synthetic(n_users=60, n_items=30, n_interactions=600, seed=1))
    root = tmp_path_factory.mktemp('models')
    return {m.name: m.fit(train).save(root/m.name) for m in (Popularity(), ItemKNN(neighbors=10), EASE())}


def read(d, name): return json.loads((d/name).read_text())

def write(d, name, obj):
    "Write `obj` as the JSON file `name` and, unless it is the manifest, re-sign it there."
    (d/name).write_text(json.dumps(obj))
    if name != 'manifest.json': resign(d, name)

def resign(d, name, digest=None):
    m = read(d, 'manifest.json'); m['files'][name] = digest or sha256_file(d/name); write(d, 'manifest.json', m)

def edit_manifest(change):
    def tamper(d, outside): m = read(d, 'manifest.json'); change(m); write(d, 'manifest.json', m)
    return tamper

def edit_config(change):
    def tamper(d, outside): c = read(d, 'config.json'); change(c); write(d, 'config.json', c)
    return tamper

def edit_arrays(change):
    def tamper(d, outside):
        with np.load(d/'arrays.npz') as z: arrays = {k: z[k] for k in z.files}
        change(arrays); np.savez(d/'arrays.npz', **arrays); resign(d, 'arrays.npz')
    return tamper

def link_file(d, outside):
    "arrays.npz becomes a link to a copy outside the folder: the same bytes, so the checksum still matches."
    shutil.copy(d/'arrays.npz', outside/'arrays.npz')
    (d/'arrays.npz').unlink(); (d/'arrays.npz').symlink_to(outside/'arrays.npz')

def link_folder(d, outside):
    "A listed entry under a folder that is a link out of the artifact."
    shutil.copy(d/'config.json', outside/'config.json')
    (d/'sub').symlink_to(outside); resign(d, 'sub/config.json')

def outside_entry(entry):
    def tamper(d, outside):
        (outside/'x').write_text('secret'); resign(d, entry(outside), sha256_file(outside/'x'))
    return tamper

def drop(key): return lambda a: a.pop(key)
def drop_model_array(a): a.pop(next(k for k in a if k.startswith('model.')))
def shrink_model_arrays(a): a.update({k: v[:-1] for k, v in a.items() if k.startswith('model.')})

TAMPER = {  # fault -> (tamper(artifact, outside folder), what the error must say); {d} is the artifact folder
    'symlinked_file': (link_file, '{d}/arrays.npz is a symbolic link'),
    'symlinked_folder': (link_folder, '{d}/sub is a symbolic link'),
    'parent_entry': (outside_entry(lambda out: '../outside/x'), "{d}/manifest.json lists '../outside/x', outside the artifact"),
    'absolute_entry': (outside_entry(lambda out: str(out/'x')), "{d}/manifest.json lists '{out}/x', outside the artifact"),
    'manifest_not_a_dict': (lambda d, out: (d/'manifest.json').write_text('[1, 2]'), '{d}/manifest.json holds a list; expected a JSON object'),
    'files_a_list': (edit_manifest(lambda m: m.update(files=sorted(m['files']))), "{d}/manifest.json: 'files' is a list; expected"),
    'digest_not_a_string': (edit_manifest(lambda m: m['files'].update({'arrays.npz': 123})), "{d}/manifest.json: the SHA-256 of 'arrays.npz' is 123; expected"),
    'format_version_true': (edit_manifest(lambda m: m.update(format_version=True)), '{d} has artifact format True; this recsys_lib reads format'),
    'fingerprint_missing': (edit_manifest(lambda m: m.pop('train_fingerprint')), "{d}/manifest.json: 'train_fingerprint' is missing"),
    'config_not_a_dict': (lambda d, out: write(d, 'config.json', ['ease']), '{d}/config.json holds a list; expected a JSON object'),
    'unknown_parameter': (edit_config(lambda c: c['params'].update(depth=3)), "{d}/config.json: unknown parameter 'depth' for "),
    'params_missing': (edit_config(lambda c: c.pop('params')), "{d}/config.json: 'params' is missing"),
    'params_not_a_dict': (edit_config(lambda c: c.update(params=[1, 2])), "{d}/config.json: 'params' is a list; expected"),
    'model_missing': (edit_config(lambda c: c.pop('model')), "{d}/config.json: 'model' is missing"),
    'model_unknown': (edit_config(lambda c: c.update(model='svd')), "{d}/config.json names the unknown model 'svd'; known:"),
    'id_map_damaged': (lambda d, out: write(d, 'user_map.json', {'kind': 'float', 'ids': [1.5]}), '{d}/user_map.json is not an id map'),
    'base_array_missing': (edit_arrays(drop('base.seen_indptr')), "{d}/arrays.npz has no array 'base.seen_indptr'"),
    'model_array_missing': (edit_arrays(drop_model_array), "{d}/arrays.npz has no array 'model."),
    'model_arrays_shrunk': (edit_arrays(shrink_model_arrays), '{d}/arrays.npz does not hold a valid '),
}


@pytest.mark.parametrize('name', ['popularity', 'itemknn', 'ease'])
@pytest.mark.parametrize('fault', TAMPER)
def test_tampered_artifact_is_refused(models, tmp_path, fault, name):
    "A re-signed artifact passes every checksum, so the loader must check what it reads: one `ArtifactError` naming the file."
    tamper, expected = TAMPER[fault]
    copy, outside = shutil.copytree(models[name], tmp_path/'model'), tmp_path/'outside'
    outside.mkdir()
    tamper(copy, outside)
    with pytest.raises(ArtifactError) as e: load_model(copy)
    message = str(e.value)
    assert expected.format(d=copy, out=outside) in message and '\n' not in message, message


def test_model_folder_reached_through_a_link_loads(models, tmp_path):
    "The control: links inside an artifact are refused, but the folder itself may be a link (a `current` pointer)."
    (tmp_path/'current').symlink_to(models['ease'], target_is_directory=True)
    assert isinstance(load_model(tmp_path/'current'), EASE)


# ---- the Spark ALS artifact: Spark reads whole folders, so a link anywhere under it is refused

@pytest.fixture(scope='module')
def spark_saved(tmp_path_factory):
    "A tiny SparkALS saved once; each test tampers with a copy."
    pytest.importorskip('pyspark')
    from recsys_lib.spark.als import SparkALS
    from recsys_lib.spark.session import spark_session
    df = spark_session().createDataFrame(make_synthetic(n_users=40, n_items=20, n_interactions=300, seed=2))
    return SparkALS(factors=4, iterations=2, blocks=1).fit(df).save(tmp_path_factory.mktemp('spark')/'als')

def link_part_folder(d, outside):
    "seen/ becomes a link to a copy outside: the listed part files keep their paths and checksums."
    shutil.copytree(d/'seen', outside/'seen'); shutil.rmtree(d/'seen'); (d/'seen').symlink_to(outside/'seen')

def link_unlisted_folder(d, outside):
    "A link to a folder of Parquet files inside seen/, listed nowhere: Spark would read it as a partition."
    shutil.copytree(d/'seen', outside/'more'); (d/'seen'/'day=2').symlink_to(outside/'more')

def edit_als_metadata(d):
    "MLlib's own metadata names another class, re-signed: MLlib's error becomes one line naming the folder."
    part = next(p for p in (d/'als'/'metadata').glob('part-*') if p.stat().st_size)
    part.write_text(part.read_text().replace('org.apache.spark.ml.recommendation.ALSModel', 'org.apache.spark.ml.feature.PCAModel'))
    resign(d, part.relative_to(d).as_posix())

SPARK_TAMPER = {
    'symlinked_part_folder': (link_part_folder, '{d}/seen is a symbolic link'),
    'symlinked_unlisted_folder': (link_unlisted_folder, '{d}/seen/day=2 is a symbolic link'),
    'files_a_list': (edit_manifest(lambda m: m.update(files=sorted(m['files']))), "{d}/manifest.json: 'files' is a list; expected"),
    'config_not_a_dict': (lambda d, out: write(d, 'config.json', 'spark_als'), '{d}/config.json holds a str; expected a JSON object'),
    'unknown_parameter': (edit_config(lambda c: c['params'].update(rank=3)), "{d}/config.json: unknown parameter 'rank' for SparkALS; it accepts factors, "),
    'params_missing': (edit_config(lambda c: c.pop('params')), "{d}/config.json: 'params' is missing"),
    'model_missing': (edit_config(lambda c: c.pop('model')), "{d}/config.json: 'model' is missing"),
    'count_missing': (edit_config(lambda c: c.pop('n_items')), "{d}/config.json: 'n_items' is missing"),
    'count_not_a_number': (edit_config(lambda c: c.update(n_users='40')), "{d}/config.json: 'n_users' is a str; expected"),
    'als_metadata_edited': (lambda d, out: edit_als_metadata(d), "{d}/als is not a model MLlib's ALSModel can load"),
    'id_kinds_wrong': (edit_config(lambda c: c.update(id_kinds={'user_id': 'float'})), "{d}/config.json: 'id_kinds' is {{'user_id': 'float'}}; expected 'int' or 'str' for each of user_id, item_id"),
}


@pytest.mark.parametrize('fault', SPARK_TAMPER)
def test_tampered_spark_artifact_is_refused(spark_saved, tmp_path, fault):
    from recsys_lib.spark.als import SparkALS
    tamper, expected = SPARK_TAMPER[fault]
    copy, outside = shutil.copytree(spark_saved, tmp_path/'model'), tmp_path/'outside'
    outside.mkdir()
    tamper(copy, outside)
    with pytest.raises(ArtifactError) as e: SparkALS.load(copy)
    message = str(e.value)
    assert expected.format(d=copy) in message and '\n' not in message, message


CLI_FAULTS = {  # fault -> (tamper, the reason `recsys run` must print)
    'byte_flipped': (lambda d: flip_byte(d), '{d}/config.json does not match its SHA-256'),
    'unknown_parameter': (lambda d: edit_config(lambda c: c['params'].update(depth=3))(d, None), "{d}/config.json: unknown parameter 'depth'"),
}

@pytest.mark.parametrize('fault', CLI_FAULTS)
def test_batch_inference_pipeline_refuses_a_damaged_model(saved, clean_env, tmp_path, fault):
    "`recsys run` with a corrupted or hand-edited `model_path`: a non-zero exit, one line saying why, nothing published."
    tamper, expected = CLI_FAULTS[fault]
    copy = shutil.copytree(saved, tmp_path/'model')
    tamper(copy)
    r = subprocess.run([str(BIN/'recsys'), 'run', str(ROOT/'pipelines'/'batch_inference.ipynb'), '-p', 'model_path', str(copy),
                        '--no-progress', '--no-track'], capture_output=True, text=True, env=clean_env, timeout=600)
    assert r.returncode != 0
    reason = [line for line in r.stderr.splitlines() if line.startswith('recsys run:')]
    assert len(reason) == 1, r.stderr[-3000:]
    assert 'ArtifactError' in reason[0] and expected.format(d=copy) in reason[0], reason[0]
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
    from recsys_lib import registry
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
    assert register_run(ok.run_dir)['version'] == 1 and len(registry.list_versions('faults')) == 1


SPARK_SCORING_TAMPER = ['config_not_a_dict', 'model_missing', 'model_unknown', 'params_not_a_dict', 'unknown_parameter',
                        'id_map_damaged', 'base_array_missing']

@pytest.mark.parametrize('fault', SPARK_SCORING_TAMPER)
def test_spark_scoring_refuses_a_tampered_artifact_on_the_driver(models, tmp_path, fault):
    "Spark batch scoring reads the artifact through the loader's checks: the same one-line `ArtifactError`, before any job."
    pytest.importorskip('pyspark')
    from recsys_lib.spark.scoring import batch_recommend_spark
    tamper, expected = TAMPER[fault]
    copy, outside = shutil.copytree(models['ease'], tmp_path/'model'), tmp_path/'outside'
    outside.mkdir()
    tamper(copy, outside)
    with pytest.raises(ArtifactError) as e: batch_recommend_spark(copy, tmp_path/'reco', k=3, partitions=1)
    message = str(e.value)
    assert expected.format(d=copy, out=outside) in message and '\n' not in message, message
    assert not (tmp_path/'reco').exists()
