"""Fallback rows and id kinds, end to end: unknown and cold users get the popularity list, marked `fallback` and scored
by relative popularity (count / max count, in (0, 1]), the same from `recommend`, `batch_recommend` and a saved and
loaded model; ids of the other kind than the model's fail with a message that names the kind and the conversion."""
import json, re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys_lib.core import DataError
from recsys_lib.data import Interactions
from recsys_lib.ease import EASE
from recsys_lib.inference import batch_recommend, read_recommendations
from recsys_lib.models import Popularity, load_model, read_manifest, relative_popularity

UNKNOWN = 10**9


@pytest.fixture(scope='module')
def cold(inter):
    "A user of the id map whose interactions are left out of training."
    return int(inter.user_map.ids[0])


@pytest.fixture(scope='module')
def train(inter, cold):
    return inter.subset((inter.df.user_id != cold).to_numpy())


@pytest.fixture(scope='module')
def ease(train):
    return EASE(l2=50).fit(train)


@pytest.fixture(scope='module')
def known(ease):
    return [int(u) for u in ease.trained_users[:2]]


def test_fallback_column_marks_the_popularity_rows(ease, known, cold):
    reco = ease.recommend([*known, cold, UNKNOWN], k=5)
    assert list(reco.columns) == ['user_id', 'item_id', 'score', 'rank', 'fallback'] and reco.fallback.dtype == bool
    assert reco.groupby('user_id').fallback.all().to_dict() == {known[0]: False, known[1]: False, cold: True, UNKNOWN: True}
    assert not reco[reco.user_id.isin(known)].fallback.any()  # no mixed lists
    lists = reco[reco.fallback].groupby('user_id').item_id.apply(list)
    assert lists[cold] == lists[UNKNOWN]  # cold and unknown users get the same list


def test_fallback_scores_are_relative_popularity(ease, train):
    fb = ease.recommend([UNKNOWN], k=20)
    users_per_item = train.df.groupby('item_id').user_id.nunique()
    # the ranking of the counts, ties by item id (= item code): the ranking before the scale changed
    assert fb.item_id.tolist() == users_per_item.sort_values(ascending=False, kind='stable').index[:20].tolist()
    want = (users_per_item / users_per_item.max()).astype('float32')
    np.testing.assert_array_equal(fb.score.to_numpy(), want.loc[fb.item_id].to_numpy())
    assert fb.score.iloc[0] == 1.0 and fb.score.between(0, 1, inclusive='right').all()
    assert relative_popularity(ease.item_popularity_).max() == 1.0


def test_popularity_model_scores_known_and_unknown_users_alike(train, known):
    pop = Popularity().fit(train)
    seen = pop.recommend([known[0]], k=10, exclude_seen=False)
    unknown = pop.recommend([UNKNOWN], k=10)
    assert seen.fallback.tolist() == [False] * 10 and unknown.fallback.tolist() == [True] * 10
    pd.testing.assert_frame_equal(seen[['item_id', 'score', 'rank']], unknown[['item_id', 'score', 'rank']])
    counts = train.df.item_id.value_counts().sort_index()
    assert unknown.item_id.tolist() == counts.sort_values(ascending=False, kind='stable').index[:10].tolist()
    assert unknown.score.iloc[0] == 1.0


def test_batch_recommend_writes_the_column_and_matches_recommend(ease, known, cold, tmp_path):
    users = [*known, cold, UNKNOWN]  # batch_recommend writes the trained users' blocks first, then the fallback
    m = batch_recommend(ease, tmp_path/'out', users=users, k=5, progress=False)
    assert m['fallback_users'] == 2
    for f in m['files']: assert pq.read_schema(tmp_path/'out'/f).field('fallback').type == pa.bool_()
    pd.testing.assert_frame_equal(read_recommendations(tmp_path/'out'), ease.recommend(users, k=5))


def test_saved_model_keeps_id_kinds_and_fallback(ease, known, cold, tmp_path):
    ease.save(tmp_path/'m')
    manifest = read_manifest(tmp_path/'m')
    assert (manifest['user_id_kind'], manifest['item_id_kind']) == ('int', 'int')
    users = [*known, cold, UNKNOWN]
    pd.testing.assert_frame_equal(load_model(tmp_path/'m').recommend(users, k=5), ease.recommend(users, k=5))
    # a manifest written before the kinds were recorded still loads
    del manifest['user_id_kind'], manifest['item_id_kind']
    (tmp_path/'m'/'manifest.json').write_text(json.dumps(manifest))
    pd.testing.assert_frame_equal(load_model(tmp_path/'m').recommend(users, k=5), ease.recommend(users, k=5))


def test_wrong_id_kind_names_the_expected_kind_and_the_conversion(ease, inter, known, tmp_path):
    to_int = "users are str ids but the model was trained on int ids (e.g. {}); pass them as integers: [int(u) for u in users]"
    msg = re.escape(to_int.format(ease.user_map_.ids.tolist()[0]))
    with pytest.raises(DataError, match=msg): ease.recommend([str(known[0])], k=3)
    with pytest.raises(DataError, match=msg): ease.score([str(known[0])], [int(ease.item_map_.ids[0])])
    with pytest.raises(DataError, match=msg): batch_recommend(ease, tmp_path/'out', users=[str(known[0])], progress=False)
    with pytest.raises(DataError, match="'007' and '7' are different str ids"): ease.recommend(['007'], k=3)
    with pytest.raises(DataError, match=re.escape("items are str ids but the model was trained on int ids")):
        ease.recommend(known, k=3, items=['1', '2'])
    assert not (tmp_path/'out').exists()

    df = inter.df.assign(user_id=lambda d: 'u' + d.user_id.astype(str), item_id=lambda d: 'i' + d.item_id.astype(str))
    named = EASE(l2=50).fit(Interactions.from_df(df[['user_id', 'item_id']]))
    named.save(tmp_path/'named')
    manifest = read_manifest(tmp_path/'named')
    assert (manifest['user_id_kind'], manifest['item_id_kind']) == ('str', 'str')
    with pytest.raises(DataError, match=re.escape(f"users are int ids but the model was trained on str ids "
                                                  f"(e.g. {named.user_map_.ids[0]!r}); pass them as strings: [str(u) for u in users]")):
        named.recommend([1, 2], k=3)
    with pytest.raises(DataError, match=re.escape("items are int ids but the model was trained on str ids")):
        named.score(['u1'], [1])
