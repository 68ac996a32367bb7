"recsys_lib.spark.metrics against recsys_lib.metrics: the same numbers (to 1e-9), the same errors."
import warnings

import numpy as np
import pandas as pd
import pytest

pytest.importorskip('pyspark')

from recsys_lib.core import DataError
from recsys_lib.data import Interactions
from recsys_lib.itemknn import ItemKNN
from recsys_lib.metrics import calc_metrics, per_user_metrics
from recsys_lib.models import Popularity
from recsys_lib.split import leave_last_out
from recsys_lib.synthetic import SYNTHETIC_PRESETS, make_synthetic

EPS = 1e-9


@pytest.fixture(scope='module')
def data():
    "A leave-last-out split of the tiny synthetic data and the top-10 lists of two models for every test user."
    inter = Interactions.from_df(make_synthetic(**SYNTHETIC_PRESETS['tiny']))
    split = leave_last_out(inter, n_test=2)
    train = split.train.df[['user_id', 'item_id']].reset_index(drop=True)
    truth = split.test.df[['user_id', 'item_id']].reset_index(drop=True)
    users = np.sort(truth['user_id'].unique())
    recos = {type(m).__name__: m.fit(split.train).recommend(users, k=10) for m in (Popularity(), ItemKNN(neighbors=20))}
    return train, truth, recos


def sdf(spark, df):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FutureWarning)
        return spark.createDataFrame(df)


def same_per_user(got, want):
    got = got.toPandas()
    assert got['user_id'].tolist() == want.index.tolist()
    assert got.columns.tolist()[1:] == want.columns.tolist()
    np.testing.assert_allclose(got.drop(columns='user_id').to_numpy(), want.to_numpy(), rtol=0, atol=EPS)


def same_summary(got, want):
    assert got.index.tolist() == want.index.tolist()
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=0, atol=EPS)


def test_quick_all_metrics_equal(spark, data):
    "The one quick JVM test: every metric of a real model's lists equals the pandas value, Spark DataFrames in."
    from recsys_lib.spark.metrics import calc_metrics_spark
    train, truth, recos = data
    reco = recos['ItemKNN'].iloc[:-3]                    # one user with a shorter list
    got = calc_metrics_spark(sdf(spark, reco), sdf(spark, truth), k=[5, 10], train=sdf(spark, train))
    same_summary(got, calc_metrics(reco, truth, k=[5, 10], train=train))
    assert {'ndcg@10', 'map@10', 'coverage@5', 'novelty@10', 'arp@10'} <= set(got.index)


@pytest.mark.spark_heavy
@pytest.mark.parametrize('model', ['Popularity', 'ItemKNN'])
@pytest.mark.parametrize('users', ['truth', 'common'])
def test_models_vs_leave_last_out(spark, data, model, users):
    "Both models, both averages, ranks given or derived from scores, users missing from reco, all catalogs."
    from recsys_lib.spark.metrics import calc_metrics_spark, per_user_metrics_spark
    train, truth, recos = data
    reco = recos[model]
    keep = reco['user_id'].isin(np.sort(truth['user_id'].unique())[::3])    # a third of the truth users get no list
    reco = reco[~keep]
    scored = reco.drop(columns='rank')
    ks = [1, 5, 10]
    same_per_user(per_user_metrics_spark(reco, truth, ks, users=users), per_user_metrics(reco, truth, ks, users=users))
    same_per_user(per_user_metrics_spark(scored, truth, ks, users=users), per_user_metrics(scored, truth, ks, users=users))
    for kw in ({}, {'train': train}, {'catalog': 500}, {'catalog': np.arange(0, 400, 2)}):
        same_summary(calc_metrics_spark(reco, truth, ks, users=users, **kw), calc_metrics(reco, truth, ks, users=users, **kw))
    same_summary(calc_metrics_spark(scored, truth, ks, train=train, users=users),
                 calc_metrics(scored, truth, ks, train=train, users=users))


def _reference_tables(trial, rng):
    "Random tables with duplicate truth rows, tied scores, users on one side only (as in the metrics notebook)."
    tr = pd.DataFrame({'user_id': rng.integers(0, 40, 400), 'item_id': rng.integers(0, 30, 400)})
    rc = (pd.DataFrame({'user_id': rng.integers(5, 50, 600), 'item_id': rng.integers(0, 35, 600),
                        'score': rng.integers(0, 4, 600).astype(float)}).drop_duplicates(['user_id', 'item_id']))
    if trial % 2:
        rc = rc.assign(user_id='u' + rc['user_id'].astype(str), item_id='i' + rc['item_id'].astype(str)).sample(frac=1, random_state=trial)
        tr = tr.assign(user_id='u' + tr['user_id'].astype(str), item_id='i' + tr['item_id'].astype(str))
    if trial == 2: rc = rc.assign(rank=rc.groupby('user_id').cumcount() * 2 + 1)    # ranks given, with gaps
    return rc, tr


@pytest.mark.spark_heavy
@pytest.mark.parametrize('trial', range(4))
def test_random_tables(spark, trial):
    from recsys_lib.spark.metrics import calc_metrics_spark, per_user_metrics_spark
    rc, tr = _reference_tables(trial, np.random.default_rng(trial))
    for users in ('truth', 'common'):
        same_per_user(per_user_metrics_spark(rc, tr, [1, 3, 10], users=users), per_user_metrics(rc, tr, [1, 3, 10], users=users))
        same_summary(calc_metrics_spark(rc, tr, [1, 3, 10], train=tr, users=users), calc_metrics(rc, tr, [1, 3, 10], train=tr, users=users))
        same_summary(calc_metrics_spark(rc, tr, [3, 10], users=users), calc_metrics(rc, tr, [3, 10], users=users))


TRUTH = pd.DataFrame({'user_id': [1, 1, 1, 2, 3, 3], 'item_id': ['a', 'b', 'c', 'd', 'e', 'f']})
RECO = pd.DataFrame({'user_id': [1, 1, 1, 1, 2, 2, 2, 4], 'item_id': ['a', 'x', 'b', 'y', 'x', 'y', 'd', 'a'],
                     'rank': [1, 2, 3, 4, 1, 2, 3, 1]})
TRAIN = pd.DataFrame({'user_id': [10, 11, 12, 13, 10, 11, 10, 11], 'item_id': ['a', 'a', 'a', 'a', 'b', 'x', 'x', 'x']})


@pytest.mark.spark_heavy
def test_edge_cases(spark):
    "The pandas notebook's edge cases: no hits, no lists, empty reco, duplicate truth rows, ids of other types."
    from recsys_lib.spark.metrics import calc_metrics_spark, per_user_metrics_spark
    cases = [(RECO, TRUTH), (RECO.assign(rank=[1, 2, 5, 6, 1, 2, 3, 1]), pd.concat([TRUTH, TRUTH])),
             (RECO.iloc[:0], TRUTH), (RECO.assign(item_id='zz' + RECO['item_id']), TRUTH),        # no hits at all
             (RECO.astype({'user_id': 'int32'}), TRUTH.astype({'user_id': 'int16'})),
             (RECO.assign(user_id=RECO['user_id'] * 2**50), TRUTH.assign(user_id=TRUTH['user_id'] * 2**50)),
             (RECO.assign(rank=RECO['rank'].astype(float)), TRUTH)]
    for reco, truth in cases:
        for users in ('truth', 'common'):
            same_per_user(per_user_metrics_spark(reco, truth, [1, 3, 5], users=users), per_user_metrics(reco, truth, [1, 3, 5], users=users))
            if users == 'common' and reco is not RECO: continue   # the aggregates of 'common' once: each call is a few Spark jobs
            got, want = calc_metrics_spark(reco, truth, [1, 3], train=TRAIN, users=users), calc_metrics(reco, truth, [1, 3], train=TRAIN, users=users)
            assert got.index.tolist() == want.index.tolist()
            np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=0, atol=EPS)   # NaN where pandas has NaN
    for catalog in (None, 10, ['a', 'b', 'c', 'z'], [1, 2]):
        same_summary(calc_metrics_spark(RECO, TRUTH, 3, catalog=catalog), calc_metrics(RECO, TRUTH, 3, catalog=catalog))
    cat = calc_metrics_spark(RECO, TRUTH, 3, catalog=sdf(spark, pd.DataFrame({'item_id': ['a', 'b', 'c', 'z', 'a']})))
    same_summary(cat, calc_metrics(RECO, TRUTH, 3, catalog=['a', 'b', 'c', 'z']))


@pytest.mark.spark_heavy
@pytest.mark.parametrize('call, message', [
    (lambda f, g: f(RECO, TRUTH.drop(columns='item_id')), "truth lacks column 'item_id'"),
    (lambda f, g: f(RECO, TRUTH.iloc[:0]), "truth is empty"),
    (lambda f, g: f(RECO, TRUTH, k=0), "k must be a positive int"),
    (lambda f, g: f(RECO, TRUTH, users='all'), "users must be 'truth' or 'common'"),
    (lambda f, g: f(RECO, TRUTH.assign(user_id=TRUTH['user_id'].astype(str))), "user_id holds bigint values in one table and string"),
    (lambda f, g: f(RECO, TRUTH.assign(user_id=[1, 1, None, 2, 3, 3])), "truth user_id holds 1 null"),
    (lambda f, g: f(RECO.values, TRUTH), "reco must be a Spark or pandas DataFrame"),
    (lambda f, g: f(RECO.drop(columns='rank'), TRUTH), "needs a 'rank' column"),
    (lambda f, g: f(RECO.rename(columns={'user_id': 'user'}), TRUTH), "reco lacks column 'user_id'"),
    (lambda f, g: f(pd.concat([RECO, RECO.iloc[[2]]]), TRUTH), "item_id 'b' to user_id 1 more than once"),
    (lambda f, g: f(RECO.assign(rank=[1, 2, 2, 4, 1, 2, 3, 1]), TRUTH), "rank 2 to two items of user_id 1"),
    (lambda f, g: f(RECO.assign(rank=[1, 2, 3, 0, 1, 2, 3, 1]), TRUTH), "integer >= 1, got 0"),
    (lambda f, g: f(RECO.assign(rank=[1, 2, 3, 4, 1, 2.5, 3, 1]), TRUTH), "got 2.5 for user_id 2"),
    (lambda f, g: f(RECO.assign(rank=[1, 2, 3, 4, 1, None, 3, 1]), TRUTH), "reco rank holds 1 null"),
    (lambda f, g: f(RECO.assign(rank='1'), TRUTH), "reco rank must be numeric"),
    (lambda f, g: f(RECO.drop(columns='rank').assign(score=[1, None, 2, 3, 1, 1, 1, 1]), TRUTH), "reco score holds 1 null"),
    (lambda f, g: f(RECO.assign(item_id=['a', None, 'b', 'y', 'x', 'y', 'd', 'a']), TRUTH), "reco item_id holds 1 null value(s)"),
    (lambda f, g: g(RECO, TRUTH, train=TRAIN.iloc[:0]), "train is empty"),
    (lambda f, g: g(RECO, TRUTH, train=TRAIN.drop(columns='user_id')), "train lacks column 'user_id'"),
    (lambda f, g: g(RECO, TRUTH, train=TRAIN.assign(item_id=1)), "item_id holds string values in one table and bigint"),
    (lambda f, g: g(RECO, TRUTH, catalog=0), "catalog must be a positive number"),
    (lambda f, g: g(RECO, TRUTH, catalog=[]), "catalog is empty"),
])
def test_errors(spark, call, message):
    "Bad input fails like the pandas version: a DataError (a ValueError) naming the column and the value."
    from recsys_lib.spark.metrics import calc_metrics_spark, per_user_metrics_spark
    with pytest.raises(DataError, match=None) as e: call(per_user_metrics_spark, calc_metrics_spark)
    assert message in str(e.value), str(e.value)
    assert isinstance(e.value, ValueError)


@pytest.mark.spark_heavy
def test_no_python_udf_and_one_result_row(spark, data):
    "The plan is DataFrame operations only (no Python UDF / mapInPandas), and only the aggregates are collected."
    from recsys_lib.spark.metrics import _SparkEval
    train, truth, recos = data
    e = _SparkEval(recos['ItemKNN'], truth, [5, 10], 'truth', train)
    plan = e.per_user()._jdf.queryExecution().executedPlan().toString()
    assert 'Python' not in plan and 'ArrowEval' not in plan, plan
