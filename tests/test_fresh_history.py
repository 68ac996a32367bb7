"""Recommendations from fresh history, end to end for every model: a user whose request-time history is their
training history gets exactly `recommend`'s and `batch_recommend`'s rows (EASE, ItemKNN, Popularity, SASRec), also
from a saved and loaded model; ALS, which recomputes the user's factors, overlaps `recommend` on nearly all of its
top 10 (the measured figure is printed); unknown items are skipped and counted."""
import warnings

import numpy as np
import pandas as pd
import pytest

from recsys_lib.inference import batch_recommend, read_recommendations
from recsys_lib.models import load_model, model_class

MODELS = {
    'popularity': {},
    'ease': dict(l2=50),
    'itemknn': dict(neighbors=30),
    'als': dict(factors=16, iterations=10),
    'sasrec': dict(max_len=10, hidden=16, n_heads=2, n_layers=1, batch_size=64, max_epochs=2, seed=0, accelerator='cpu',
                   progress_bar=False),
}
EXACT = ['popularity', 'ease', 'itemknn', 'sasrec']
COLS = ['user_id', 'item_id', 'timestamp']


def _fit(name, inter):
    if name == 'sasrec':
        pytest.importorskip('torch'); pytest.importorskip('pytorch_lightning')
    if name == 'als': pytest.importorskip('implicit')
    return model_class(name)(**MODELS[name]).fit(inter)


@pytest.fixture(scope='module')
def fitted(inter):
    cache = {}
    def get(name):
        if name not in cache: cache[name] = _fit(name, inter)
        return cache[name]
    return get


def _by_user(df):
    return df.sort_values(['user_id', 'rank'], kind='stable').reset_index(drop=True)


def _same_rows(a, b, exact_scores=True):
    a, b = _by_user(a), _by_user(b)
    pd.testing.assert_frame_equal(a.drop(columns='score'), b.drop(columns='score'))
    if exact_scores: np.testing.assert_array_equal(a.score.to_numpy(), b.score.to_numpy())
    else: np.testing.assert_allclose(a.score.to_numpy(), b.score.to_numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('name', EXACT)
def test_training_history_gives_recommend_and_batch_recommend(name, fitted, inter, tmp_path):
    model = fitted(name)
    history = inter.df[COLS]
    order = history.user_id.unique()
    fresh = model.recommend_history(history, k=10)
    assert fresh.attrs['skipped_items'] == {}
    pd.testing.assert_frame_equal(fresh, model.recommend(order, k=10))  # row for row, scores included
    batch_recommend(model, tmp_path/'out', users=order, k=10, progress=False)
    _same_rows(fresh, read_recommendations(tmp_path/'out'), exact_scores=name != 'sasrec')  # other block sizes: float rounding
    # a saved and loaded model (what a server holds) answers the same; so does the dict form, oldest first
    model.save(tmp_path/'model')
    some = order[:40]
    part = history[history.user_id.isin(some)]
    loaded = load_model(tmp_path/'model').recommend_history(part, k=10)
    _same_rows(loaded, fresh[fresh.user_id.isin(some)], exact_scores=name != 'sasrec')
    as_dict = {u: g.sort_values('timestamp', kind='stable').item_id.tolist() for u, g in part.groupby('user_id', sort=False)}
    pd.testing.assert_frame_equal(model.recommend_history(as_dict, k=10), fresh[fresh.user_id.isin(some)].reset_index(drop=True))


@pytest.mark.parametrize('name', list(MODELS))
def test_with_training_and_no_new_events_is_recommend(name, fitted):
    model = fitted(name)
    users = model.trained_users[:30]
    unknown = 10**9
    got = model.recommend_history({**{u: [] for u in users}, unknown: []}, k=5, with_training=True)
    pd.testing.assert_frame_equal(got, model.recommend([*users, unknown], k=5))
    assert got[got.user_id == unknown].fallback.all()


def test_als_recomputed_factors_overlap_recommend(fitted, inter):
    "ALS solves each user's factors again from the history against the final item factors: nearly the trained top 10."
    model = fitted('als')
    history = inter.df[COLS]
    order = history.user_id.unique()
    trained, fresh = model.recommend(order, k=10), model.recommend_history(history, k=10)
    overlap = trained.merge(fresh, on=['user_id', 'item_id']).groupby('user_id').size().reindex(order, fill_value=0) / 10
    print(f"ALS overlap@10 of recommend and recommend_history on the training histories: mean {overlap.mean():.3f}, "
          f"lowest {overlap.min():.1f} ({len(order)} users)")
    assert overlap.mean() >= 0.8
    assert (trained.user_id.to_numpy() == fresh.user_id.to_numpy()).all() and not fresh.fallback.any()


@pytest.mark.parametrize('name', list(MODELS))
def test_unknown_items_are_skipped_and_counted(name, fitted, inter):
    model = fitted(name)
    user = int(inter.df.user_id.iloc[0])
    items = inter.df[inter.df.user_id == user].sort_values('timestamp', kind='stable').item_id.tolist()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        got = model.recommend_history({user: [-1, *items, -2], 10**9: [-3]}, k=5)
    assert got.attrs['skipped_items'] == {user: 2, 10**9: 1}
    assert any('3 history items of 2 of 2 users are unknown' in str(x.message) for x in w)
    pd.testing.assert_frame_equal(got[got.user_id == user].reset_index(drop=True), model.recommend_history({user: items}, k=5))
    assert got[got.user_id == 10**9].fallback.all() and not got[got.user_id == user].fallback.any()
