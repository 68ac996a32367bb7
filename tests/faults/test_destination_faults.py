"""Writers never delete what is not theirs: a model, a batch output or a published folder replaces its destination
only when it is empty or an earlier output of the same kind; anything else is refused, naming the folder and what
it holds. New outputs follow the umask, and temporaries of writers killed before their rename are cleaned."""
import os, stat, subprocess

import pytest

from conftest import BIN, ROOT


@pytest.fixture(scope='module')
def model():
    import pandas as pd
    from recsys_lib.data import Interactions
    from recsys_lib.ease import EASE
    df = pd.DataFrame({'user_id': [1, 1, 2, 2, 3, 3], 'item_id': [10, 20, 10, 30, 20, 30]})
    return EASE(l2=1.0).fit(Interactions.from_df(df))


def someone_elses(folder):
    (folder/'reports').mkdir(parents=True)
    (folder/'README').write_text('mine')
    (folder/'reports'/'q3.txt').write_text('quarterly numbers')
    return folder


def untouched(folder):
    return (folder/'README').read_text() == 'mine' and (folder/'reports'/'q3.txt').read_text() == 'quarterly numbers'


def test_save_batch_and_publish_refuse_a_folder_of_other_files(model, tmp_path):
    from recsys_lib.core import DestinationError
    from recsys_lib.inference import batch_recommend
    from recsys_lib.pipeline import publish
    out = tmp_path/'reco'
    batch_recommend(model, out, k=2, progress=False)
    for write in (lambda d: model.save(d), lambda d: batch_recommend(model, d, k=2, progress=False), lambda d: publish(out, d)):
        folder = someone_elses(tmp_path/f'mine{id(write)}')
        with pytest.raises(DestinationError, match=r"refusing to replace .*mine.*: it holds 2 file\(s\) .*README, reports/q3.txt"):
            write(folder)
        assert untouched(folder) and sorted(os.listdir(folder)) == ['README', 'reports']
    # an earlier output of the same kind is replaced, as before
    model.save(tmp_path/'model'); model.save(tmp_path/'model')
    publish(out, tmp_path/'pub'); publish(out, tmp_path/'pub')
    with pytest.raises(DestinationError, match="refusing to replace"): model.save(tmp_path/'reco')  # a batch output is no model


def test_writers_refuse_a_published_link(model, tmp_path):
    "A model or a batch output written onto a published folder (a link to its newest version) would replace the link: refused, nothing changed."
    from recsys_lib.core import DestinationError
    from recsys_lib.inference import batch_recommend, read_recommendations
    from recsys_lib.pipeline import publish
    out = batch_recommend(model, tmp_path/'reco', k=2, progress=False) and tmp_path/'reco'
    pub = publish(out, tmp_path/'pub')
    target, before = os.readlink(pub), read_recommendations(pub)
    for write in (lambda d: model.save(d), lambda d: batch_recommend(model, d, k=2, progress=False)):
        with pytest.raises(DestinationError, match=r"pub is a symbolic link .*publish it with `publish_output`"): write(pub)
        assert os.readlink(pub) == target and read_recommendations(pub).equals(before)
    assert sorted(os.listdir(tmp_path)) == ['.pub.versions', 'pub', 'reco']


def test_saving_onto_a_file_is_one_clear_error(model, tmp_path):
    from recsys_lib.core import DestinationError
    (tmp_path/'model.txt').write_text('not a folder')
    with pytest.raises(DestinationError, match=r"model.txt is a file; expected a folder"): model.save(tmp_path/'model.txt')
    with pytest.raises(DestinationError, match="a file stands where a parent folder should be"): model.save(tmp_path/'model.txt'/'m')
    assert (tmp_path/'model.txt').read_text() == 'not a folder' and os.listdir(tmp_path) == ['model.txt']


def test_outputs_follow_the_umask(model, tmp_path):
    from recsys_lib.pipeline import publish
    old = os.umask(0o022)
    try:
        model.save(tmp_path/'model')
        from recsys_lib.inference import batch_recommend
        batch_recommend(model, tmp_path/'reco', k=2, progress=False)
        publish(tmp_path/'reco', tmp_path/'pub')
    finally: os.umask(old)
    for d in ('model', 'reco', 'pub'):
        assert stat.S_IMODE((tmp_path/d).stat().st_mode) == 0o755, d
        assert all(stat.S_IMODE(f.stat().st_mode) == 0o644 for f in (tmp_path/d).iterdir()), d


def test_temporaries_of_killed_writers_are_cleaned_on_the_next_write(model, tmp_path):
    pid = subprocess.Popen(['true']); pid.wait()   # a pid that is gone
    stale = tmp_path/f'.model.{pid.pid}-x1.tmp'; stale.mkdir(); (stale/'arrays.npz').write_text('half')
    live = tmp_path/f'.model.{os.getpid()}-x2.tmp'; live.mkdir()   # a writer still running (this process)
    other = tmp_path/f'.reco.{pid.pid}-x3.tmp'; other.mkdir()       # another destination's: not ours to clean
    model.save(tmp_path/'model')
    assert not stale.exists() and live.exists() and other.exists()


def test_batch_pipeline_refuses_to_publish_into_a_folder_of_other_files(model, clean_env, tmp_path):
    model.save(tmp_path/'model')
    target = someone_elses(tmp_path/'shared')
    r = subprocess.run([str(BIN/'recsys'), 'run', str(ROOT/'pipelines'/'batch_inference.ipynb'), '-p', 'model_path', str(tmp_path/'model'),
                        '-p', 'publish_dir', str(target), '-p', 'k', '1', '--no-progress', '--no-track'],
                       env=clean_env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 1 and 'raised DestinationError: refusing to replace' in r.stderr.strip().splitlines()[-1], r.stderr[-2000:]
    assert untouched(target) and sorted(os.listdir(target)) == ['README', 'reports']
