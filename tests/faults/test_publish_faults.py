"""Readers during a publish, and publishers at the same time: a reader of the published folder always gets one whole
published version (never a mix of two, never "_manifest.json is missing"), concurrent publishers take turns, and
only our own old versions and temporaries are ever deleted. A hand-edited `_manifest.json` is one `DataError`."""
import json, os, signal, subprocess, sys, time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
PUBLISH = 'recsys_lib.inference:publish_output'
PARTS = 6   # more parts, more chances for a reader to straddle two versions


def rows_of(marker: str) -> int:
    "Each version's row count follows from its marker, so a reader can tell a whole version from a mix."
    return PARTS * (20 + sum(map(ord, marker)) % 17)


def make_output(folder: Path, marker: str) -> Path:
    "A `batch_recommend`-style output (Parquet parts + checksummed `_manifest.json`) whose every row carries `marker`."
    import numpy as np, pyarrow as pa, pyarrow.parquet as pq
    from recsys_lib.core import sha256_file
    folder.mkdir(parents=True)
    per = rows_of(marker) // PARTS
    files = {}
    for p in range(PARTS):
        users = np.arange(p * per, (p + 1) * per)
        pq.write_table(pa.table({'user_id': users, 'item_id': users % 101, 'score': np.ones(per, 'float32'),
                                 'rank': np.ones(per, 'int32'), 'fallback': np.zeros(per, bool), 'marker': [marker] * per}),
                       folder/f'part-{p:05d}.parquet')
        files[f'part-{p:05d}.parquet'] = sha256_file(folder/f'part-{p:05d}.parquet')
    (folder/'_manifest.json').write_text(json.dumps({'rows': rows_of(marker), 'files': files, 'marker': marker}))
    return folder


def writer(publish: str, dest: str, work: str, name: str, n: int):
    "Publish `n` fresh outputs to `dest`; print the markers published and the errors met, as JSON."
    import importlib
    module, fn = publish.split(':')
    publish = getattr(importlib.import_module(module), fn)
    done, errors = [], []
    for i in range(n):
        marker = f'{name}-{i:03d}'
        src = make_output(Path(work)/marker, marker)
        try: publish(src, dest); done.append(marker)
        except Exception as e: errors.append(f'{type(e).__name__}: {e}')
    print(json.dumps({'published': done, 'errors': errors}))


def reader(dest: str, ready: str, stop: str, max_reads: int, max_seconds: float):
    "Say `ready`, then read `dest` until `stop` exists; print each read's marker, and each failed or mixed read, as JSON."
    from recsys_lib.inference import read_recommendations
    Path(ready).touch()
    dest, seen, failures, start = Path(dest), [], [], time.monotonic()
    while len(seen) + len(failures) < max_reads and time.monotonic() - start < max_seconds and not Path(stop).exists():
        try:
            json.loads((dest/'_manifest.json').read_text())['files']   # a consumer reading the manifest directly
            df = read_recommendations(dest)
            markers = set(df.marker)
            marker = markers.pop()
            if markers or len(df) != rows_of(marker) or df.user_id.tolist() != list(range(rows_of(marker))):
                failures.append(f'mixed read: markers {sorted(markers | {marker})}, {len(df)} rows'); continue
            seen.append(marker)
        except Exception as e: failures.append(f'{type(e).__name__}: {e}')
    print(json.dumps({'seen': seen, 'failures': failures}))


def _start(role: str, *args) -> subprocess.Popen:
    "Run `writer` or `reader` of this file in a process of its own."
    # os._exit once the report is out: pyarrow's thread pool can abort the interpreter's own exit (SIGABRT,
    # "terminate called without an active exception", apache/arrow#34314), about once in 60 processes here
    code = (f'import json, os, sys; sys.path.insert(0, {str(HERE)!r}); from test_publish_faults import {role}; '
            f'{role}(*json.loads(sys.argv[1])); sys.stdout.flush(); os._exit(0)')
    return subprocess.Popen([sys.executable, '-c', code, json.dumps([str(a) if isinstance(a, Path) else a for a in args])],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _result(p: subprocess.Popen) -> dict:
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err[-2000:]
    return json.loads(out.strip().splitlines()[-1])


def race(tmp_path: Path, publish: str = PUBLISH, writers: int = 2, publishes: int = 15, readers: int = 3) -> dict:
    "Two publishers and three readers on one destination; what each saw."
    dest, stop = tmp_path/'shared'/'pub', tmp_path/'stop'
    wrote = [_result(_start('writer', publish, dest, tmp_path/'work0', 'first', 1))]   # readers start on a published folder
    rs = [_start('reader', dest, tmp_path/f'ready{r}', stop, 250, 60.0) for r in range(readers)]
    while not all((tmp_path/f'ready{r}').exists() for r in range(readers)):   # writers start once every reader reads
        assert all(r.poll() is None for r in rs), [r.communicate()[1][-2000:] for r in rs if r.poll() is not None]
        time.sleep(0.05)
    ws = [_start('writer', publish, dest, tmp_path/f'work{w + 1}', f'w{w}', publishes) for w in range(writers)]
    try: wrote += [_result(w) for w in ws]
    finally: stop.touch()
    read = [_result(r) for r in rs]
    return {'published': {m for w in wrote for m in w['published']},
            'writer_errors': [e for w in wrote for e in w['errors']],
            'seen': [m for r in read for m in r['seen']], 'failures': [f for r in read for f in r['failures']]}


def test_readers_always_see_one_whole_version_while_two_publishers_race(tmp_path):
    from recsys_lib.inference import publish_output, read_recommendations
    got = race(tmp_path)
    assert got['writer_errors'] == [], got['writer_errors'][:5]
    assert got['failures'] == [], (len(got['failures']), got['failures'][:5])
    assert len(got['published']) == 31 and set(got['seen']) <= got['published']
    assert len(set(got['seen'])) > 1   # the reads overlapped the publishes, or this test proves nothing
    dest = tmp_path/'shared'/'pub'
    assert read_recommendations(dest).marker.iloc[0] in got['published']
    publish_output(make_output(tmp_path/'last', 'last'), dest)   # deletes what readers held at the race's last publish
    # nothing left but the published folder and its versions: no temporaries, and only the newest versions kept
    assert sorted(os.listdir(dest.parent)) == ['.pub.versions', 'pub']
    versions = dest.parent/'.pub.versions'
    kept = sorted(p.name for p in versions.iterdir() if p.name != '.lock')
    assert len(kept) == 3 and all(p.is_dir() and (p/'_manifest.json').is_file() for p in versions.iterdir() if p.name != '.lock')
    assert dest.resolve().name == kept[-1]


@pytest.fixture
def outputs(tmp_path):
    return make_output(tmp_path/'work'/'a', 'a'), make_output(tmp_path/'work'/'b', 'b')


def test_a_folder_published_before_is_converted_in_place(outputs, tmp_path, monkeypatch):
    "A destination published by earlier releases (a real folder) becomes the pointer to a version; readers keep reading."
    import shutil
    from recsys_lib import inference
    a, b = outputs
    for exchange in (True, False):   # with the atomic swap, and where the system has none
        if not exchange: monkeypatch.setattr(inference, '_exchange', lambda x, y: False)
        dest = tmp_path/f'legacy{exchange}'/'pub'
        shutil.copytree(a, dest)   # what `publish` wrote before: a plain folder
        assert inference.read_recommendations(dest).marker.iloc[0] == 'a'
        inference.publish_output(b, dest)
        assert dest.is_symlink() and inference.read_recommendations(dest).marker.iloc[0] == 'b'
        assert json.loads((dest/'_manifest.json').read_text())['marker'] == 'b'
        assert sorted(os.listdir(dest.parent)) == ['.pub.versions', 'pub']
        inference.publish_output(a, dest)
        assert inference.read_recommendations(dest).marker.iloc[0] == 'a'


def test_a_folder_or_link_that_is_not_ours_is_still_refused(outputs, tmp_path):
    from recsys_lib.core import DestinationError
    from recsys_lib.inference import publish_output
    a, _ = outputs
    mine = tmp_path/'mine'; (mine/'reports').mkdir(parents=True)
    (mine/'README').write_text('mine'); (mine/'reports'/'q3.txt').write_text('quarterly numbers')
    with pytest.raises(DestinationError, match=r"refusing to replace .*mine: it holds 2 file\(s\) .*README, reports/q3.txt"):
        publish_output(a, mine)
    assert (mine/'README').read_text() == 'mine' and sorted(os.listdir(mine)) == ['README', 'reports']
    link = tmp_path/'link'; link.symlink_to(a)   # someone's own pointer, to a folder publishing did not make
    with pytest.raises(DestinationError, match=r"link is a symbolic link to .*work/a that publishing did not make"):
        publish_output(a, link)
    (tmp_path/'file').write_text('x')
    with pytest.raises(DestinationError, match=r"file is a file; expected a folder"): publish_output(a, tmp_path/'file')
    assert sorted(os.listdir(tmp_path)) == ['file', 'link', 'mine', 'work']   # no versions folder was made for any of them
    with pytest.raises(Exception, match=r"work.*is not a batch_recommend output"): publish_output(tmp_path/'work', tmp_path/'new')


KILLED = '''
import os, shutil, signal, sys
from recsys_lib import inference
copy = shutil.copytree
def copy_then_die(*args, **kw): copy(*args, **kw); os.kill(os.getpid(), signal.SIGKILL)
shutil.copytree = copy_then_die
inference.publish_output(sys.argv[1], sys.argv[2])
'''


def test_a_publisher_killed_mid_publish_leaves_the_published_version_and_its_debris_is_cleaned(outputs, tmp_path):
    from recsys_lib.inference import publish_output, read_recommendations
    a, b = outputs
    dest = tmp_path/'shared'/'pub'
    publish_output(a, dest)
    p = subprocess.run([sys.executable, '-c', KILLED, str(b), str(dest)], capture_output=True, text=True, timeout=120)
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
    assert read_recommendations(dest).marker.iloc[0] == 'a'                         # readers still see the last version
    debris = [x for x in (dest.parent/'.pub.versions').iterdir() if x.name.endswith('.tmp')]
    assert len(debris) == 1                                                          # the killed copy, hidden
    publish_output(b, dest)                                                          # the lock died with its holder
    assert read_recommendations(dest).marker.iloc[0] == 'b' and not debris[0].exists()


def _tampered(src: Path, tmp_path: Path, edit) -> Path:
    import shutil
    folder = tmp_path/'tampered'
    shutil.copytree(src, folder)
    manifest = json.loads((folder/'_manifest.json').read_text())
    (folder/'_manifest.json').write_text(json.dumps(edit(folder, manifest)))
    return folder


def test_manifest_entries_outside_the_folder_or_symlinked_are_refused(outputs, tmp_path):
    from recsys_lib.core import DataError, sha256_file
    from recsys_lib.inference import read_recommendations
    a, b = outputs
    secret = tmp_path/'secret.parquet'; secret.write_bytes((b/'part-00000.parquet').read_bytes())
    digest = sha256_file(secret)

    def symlinked(folder, m):
        (folder/'part-00000.parquet').unlink(); (folder/'part-00000.parquet').symlink_to(secret)
        return {**m, 'files': {**m['files'], 'part-00000.parquet': digest}}
    def outside(folder, m): return {**m, 'files': {**m['files'], '../secret.parquet': digest}}
    def absolute(folder, m): return {**m, 'files': {**m['files'], str(secret): digest}}
    for edit, why in ((symlinked, 'is a symbolic link'), (outside, 'is outside'), (absolute, 'is outside')):
        import shutil; shutil.rmtree(tmp_path/'tampered', ignore_errors=True)
        folder = _tampered(a, tmp_path, edit)
        with pytest.raises(DataError, match=f"tampered/_manifest.json: entry '.*' {why}"): read_recommendations(folder)


@pytest.mark.parametrize('edit, says', [
    (lambda m: {**m, 'files': list(m['files'])}, "'files' is a list; expected an object mapping part files to SHA-256 digests"),
    (lambda m: {k: v for k, v in m.items() if k != 'rows'}, "'rows' is missing"),
    (lambda m: {**m, 'rows': '120'}, "'rows' is a str; expected an integer"),
    (lambda m: {**m, 'files': {f: 7 for f in m['files']}}, "entry 'part-00000.parquet' has 7; expected a SHA-256 hex string"),
    (lambda m: [m], "is a list; expected a JSON object"),
], ids=['files-a-list', 'rows-missing', 'rows-a-string', 'digest-a-number', 'not-an-object'])
def test_a_hand_edited_manifest_is_one_data_error(outputs, tmp_path, edit, says):
    from recsys_lib.core import DataError
    from recsys_lib.inference import read_recommendations
    folder = _tampered(outputs[0], tmp_path, lambda folder, m: edit(m))
    with pytest.raises(DataError, match=r"tampered/_manifest.json"): read_recommendations(folder)
    with pytest.raises(DataError) as e: read_recommendations(folder)
    assert says in str(e.value) and '\n' not in str(e.value)
    (folder/'_manifest.json').write_text('{"rows": 1, "files": ')   # truncated
    with pytest.raises(DataError, match=r"tampered/_manifest.json is not valid JSON"): read_recommendations(folder)
