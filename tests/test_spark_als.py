"""SparkALS (recsys_lib.spark.als): MLlib implicit ALS behind the recsys_lib model vocabulary.

The unmarked test exercises the JVM path end to end on tiny data (fit, recommend, save/load, tampering refused).
The `spark_heavy` ones compare against the local models. Measured on the tiny preset, seed 0, leave-last-out,
factors=32, iterations=10: NDCG@10 popularity 0.092, implicit ALS 0.288, SparkALS 0.302.
"""
import re, warnings

import numpy as np
import pandas as pd
import pytest

pytest.importorskip('pyspark')


warnings.filterwarnings('ignore', message='PySpark does not yet fully support pandas')


def test_fit_recommend_save_load(spark, tiny, tmp_path):
    from recsys_lib.models import ArtifactError, relative_popularity
    from recsys_lib.spark.als import SparkALS
    als = SparkALS(factors=8, iterations=3, blocks=2).fit(spark.createDataFrame(tiny))
    users = [1, 2, 3, 99_999]  # the last is unknown: popularity fallback
    reco = als.recommend(users, k=5)
    assert reco.dtypes == [('user_id', 'bigint'), ('item_id', 'bigint'), ('score', 'float'), ('rank', 'int'),
                           ('fallback', 'boolean')]  # the columns of Recommender.recommend
    got = reco.toPandas().sort_values(['user_id', 'rank']).reset_index(drop=True)
    assert got.groupby('user_id').fallback.all().to_dict() == {1: False, 2: False, 3: False, 99_999: True}
    assert got.groupby('user_id')['rank'].apply(list).tolist() == [[1, 2, 3, 4, 5]] * 4
    assert (got.groupby('user_id').score.diff().dropna() <= 0).all()  # best first
    seen = set(map(tuple, tiny[['user_id', 'item_id']].to_numpy().tolist()))
    assert not any((u, i) in seen for u, i in got[['user_id', 'item_id']].to_numpy().tolist())
    pop = tiny.groupby('item_id').user_id.nunique().sort_values(ascending=False, kind='stable')
    assert got[got.user_id == 99_999].item_id.tolist() == pop.index[:5].tolist()
    # fallback scores on the local models' scale: relative popularity, 1.0 for the most popular item
    np.testing.assert_array_equal(got[got.user_id == 99_999].score.to_numpy(), relative_popularity(pop.to_numpy())[:5])

    als.save(tmp_path/'m')
    back = SparkALS.load(tmp_path/'m')
    again = back.recommend(users, k=5).toPandas().sort_values(['user_id', 'rank']).reset_index(drop=True)
    pd.testing.assert_frame_equal(again, got)

    part = next((tmp_path/'m'/'als'/'userFactors').glob('part-*.parquet'))
    part.write_bytes(part.read_bytes()[:-8])
    with pytest.raises(ArtifactError, match='does not match its SHA-256'):
        SparkALS.load(tmp_path/'m')


@pytest.mark.spark_heavy
def test_quality_against_popularity_and_implicit(spark, tiny):
    from recsys_lib.als import ALS
    from recsys_lib.data import Interactions
    from recsys_lib.metrics import calc_metrics
    from recsys_lib.models import Popularity
    from recsys_lib.spark.als import SparkALS
    from recsys_lib.split import leave_last_out
    split = leave_last_out(Interactions.from_df(tiny), n_test=1)
    users = split.test.df.user_id.unique()
    train = spark.createDataFrame(split.train.df[['user_id', 'item_id', 'weight', 'timestamp']])
    ndcg = lambda reco: calc_metrics(reco, split.test.df, k=10)['ndcg@10']
    pop = ndcg(Popularity().fit(split.train).recommend(users, k=10))
    local = ndcg(ALS(factors=32, iterations=10).fit(split.train).recommend(users, k=10))
    dist = ndcg(SparkALS(factors=32, iterations=10).fit(train).recommend(users, k=10).toPandas())
    print(f"NDCG@10 popularity {pop:.4f}, implicit ALS {local:.4f}, SparkALS {dist:.4f}")
    assert dist > 2 * pop
    assert dist > 0.8 * local


@pytest.mark.spark_heavy
def test_to_local_matches_and_string_ids(spark, tiny, tmp_path):
    from recsys_lib.core import DataError
    from recsys_lib.models import id_kind_message, load_model
    from recsys_lib.spark.als import SparkALS
    df = tiny.assign(user_id='u' + tiny.user_id.astype(str), item_id='i' + tiny.item_id.astype(str))
    als = SparkALS(factors=8, iterations=3).fit(spark.createDataFrame(df))
    local = als.to_local()
    assert list(local.item_map_.ids[:3]) == sorted(df.item_id.unique())[:3]  # codes in sorted id order, like IdMap
    users = df.user_id.unique()[:50].tolist() + ['nobody']
    a = als.recommend(users, k=10).toPandas().sort_values(['user_id', 'rank']).reset_index(drop=True)
    b = local.recommend(users, k=10).sort_values(['user_id', 'rank']).reset_index(drop=True)
    assert len(a) == len(b)
    assert (a.item_id.to_numpy() == b.item_id.to_numpy()).mean() > 0.98
    np.testing.assert_allclose(a.score.to_numpy(), b.score.to_numpy(), rtol=1e-3, atol=1e-4)
    assert list(a.columns) == list(b.columns)  # user_id, item_id, score, rank, fallback
    assert a.fallback.tolist() == b.fallback.tolist() and a.fallback.sum() == 10  # 'nobody' only
    assert a.score[a.fallback].max() == 1.0
    local.save(tmp_path/'local')  # the local artifact is a plain `als` model
    assert load_model(tmp_path/'local').recommend(users[:5], k=3).equals(local.recommend(users[:5], k=3))
    # the local models' message, naming the expected kind and the conversion
    msg = id_kind_message('users', min(df.user_id))
    assert msg.startswith("users are int ids but the model was trained on str ids (e.g. 'u1'); pass them as strings")
    with pytest.raises(DataError, match=re.escape(msg)):
        als.recommend([1], k=3)
    with pytest.raises(DataError, match=re.escape(msg)):
        local.recommend([1], k=3)
    with pytest.raises(DataError, match=re.escape("users.user_id holds int ids but the model was trained on str ids "
                                                  "(e.g. 'u1'); cast the column: .withColumn('user_id', F.col('user_id').cast('string'))")):
        als.recommend(spark.createDataFrame([(1,)], 'user_id long'), k=3)


@pytest.mark.spark_heavy
def test_ties_at_the_cut_are_exact(spark, tiny, monkeypatch):
    import recsys_lib.spark.als as mod
    t3 = pd.concat([tiny[['user_id', 'item_id', 'weight']],
                    pd.DataFrame({'user_id': [1, 1, 1], 'item_id': [90_001, 90_002, 90_003], 'weight': np.float32(1)})])
    m = mod.SparkALS(factors=8, iterations=3).fit(spark.createDataFrame(t3))
    full = m.to_local().recommend([1], k=m.n_items_, exclude_seen=False)
    assert full.set_index('item_id').loc[[90_001, 90_002, 90_003], 'score'].nunique() == 1  # identical histories tie
    r = int(full.loc[full.item_id == 90_001, 'rank'].iloc[0])
    monkeypatch.setattr(mod, '_MIN_BUCKET', 0)  # fetch k + 1, so the cut falls inside the three-way tie
    got = m.recommend([1], k=r, exclude_seen=False).toPandas().sort_values('rank')
    assert got.item_id.tolist()[-1] == 90_001
