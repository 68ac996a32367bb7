"Distributed top-K scoring (`recsys_lib.spark.scoring`) gives the local answers: same items, ranks and fallback."
import json, os, warnings

import numpy as np
import pandas as pd
import pytest

pytest.importorskip('pyspark')

from recsys_lib.core import sha256_file
from recsys_lib.data import Interactions
from recsys_lib.ease import EASE
from recsys_lib.inference import batch_recommend, read_recommendations
from recsys_lib.itemknn import ItemKNN
from recsys_lib.models import Popularity

pytestmark = [pytest.mark.filterwarnings('ignore:PySpark does not yet fully support pandas'),  # PySpark 4.3 on pandas 3
              pytest.mark.filterwarnings('ignore:The copy keyword is deprecated')]


def rows(df) -> list:
    "Rows (user, item, rank, fallback) as plain Python values, sorted: dtypes of pandas and Spark aside."
    return sorted(zip(df.user_id.tolist(), df.item_id.tolist(), df['rank'].astype(int).tolist(), df.fallback.tolist()))


def same(got: pd.DataFrame, want: pd.DataFrame):
    assert rows(got) == rows(want)
    key = lambda d: d.assign(user_id=d.user_id.astype(str)).sort_values(['user_id', 'rank'])
    np.testing.assert_allclose(key(got).score.to_numpy(), key(want).score.to_numpy(), rtol=1e-5, atol=1e-6)


def test_spark_batch_recommend_equals_local_batch_recommend(spark, inter, tmp_path):
    "The quick JVM-path check: EASE, every trained user, the published table and manifest."
    from recsys_lib.spark.scoring import batch_recommend_spark
    model = EASE(l2=50).fit(inter)
    model.save(tmp_path/'ease')
    m = batch_recommend_spark(tmp_path/'ease', tmp_path/'spark', k=5, block_users=64, partitions=2, spark=spark)
    local = batch_recommend(model, tmp_path/'local', k=5, progress=False)
    same(read_recommendations(tmp_path/'spark'), read_recommendations(tmp_path/'local'))
    assert {k: m[k] for k in ('rows', 'users', 'fallback_users', 'k', 'model', 'train_fingerprint')} == \
           {k: local[k] for k in ('rows', 'users', 'fallback_users', 'k', 'model', 'train_fingerprint')}
    assert m['engine'] == 'spark' and set(m['files']) <= {'part-00000.parquet', 'part-00001.parquet'}
    assert sorted(os.listdir(tmp_path)) == ['ease', 'local', 'spark']


# ---- heavier checks: pytest -m spark_heavy tests/test_spark_scoring.py

def _cold_split(inter):
    "Training data without some users, who stay in the id maps: cold users."
    return inter.subset(~inter.df.user_id.isin(inter.user_map.ids[:20]).to_numpy())


@pytest.mark.spark_heavy
@pytest.mark.parametrize('make', [lambda: Popularity(), lambda: ItemKNN(neighbors=20), lambda: EASE(l2=50)],
                         ids=['popularity', 'itemknn', 'ease'])
def test_spark_recommend_equals_local_recommend(spark, inter, tmp_path, make):
    from recsys_lib.spark.scoring import recommend_spark
    model = make().fit(_cold_split(inter))
    model.save(tmp_path/'m')
    ids = np.concatenate([inter.user_map.ids.to_numpy(), [10**9, 10**9 + 1]])  # trained, cold, unknown users
    users = spark.createDataFrame(pd.DataFrame({'user_id': ids, 'other': 1}))
    got = recommend_spark(tmp_path/'m', users, k=7, block_users=13, partitions=5, spark=spark).toPandas()
    same(got, model.recommend(ids, k=7))
    # every trained user (users=None), without masking the seen items
    got = recommend_spark(tmp_path/'m', k=4, exclude_seen=False, spark=spark).toPandas()
    same(got, model.recommend(model.trained_users, k=4, exclude_seen=False))
    # candidate items, one unknown to the model
    cand = [*inter.item_map.ids[:30].tolist(), 10**9]
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        want = model.recommend(ids[:50], k=3, items=cand)
    same(recommend_spark(tmp_path/'m', ids[:50].tolist(), k=3, items=cand, spark=spark).toPandas(), want)


@pytest.mark.spark_heavy
def test_string_ids_and_int32_columns(spark, inter, tmp_path):
    from recsys_lib.spark.scoring import recommend_spark
    df = inter.df.assign(user_id=lambda d: 'u' + d.user_id.astype(str), item_id=lambda d: 'i' + d.item_id.astype(str))
    s = Interactions.from_df(df[['user_id', 'item_id', 'timestamp']])
    model = ItemKNN(neighbors=20).fit(s)
    model.save(tmp_path/'s')
    ids = [*s.user_map.ids[:40].tolist(), 'nobody']
    got = recommend_spark(tmp_path/'s', spark.createDataFrame(pd.DataFrame({'user_id': ids})), k=5, spark=spark)
    assert [f.dataType.simpleString() for f in got.schema] == ['string', 'string', 'float', 'int', 'boolean']
    same(got.toPandas(), model.recommend(ids, k=5))
    # integer ids in an int column are widened to long, as Spark hashes long and int differently
    EASE(l2=50).fit(inter).save(tmp_path/'e')
    users = spark.createDataFrame(pd.DataFrame({'user_id': inter.user_map.ids[:10].astype('int32')}))
    assert users.schema['user_id'].dataType.simpleString() == 'int'
    assert recommend_spark(tmp_path/'e', users, k=2, spark=spark).count() == 20


@pytest.mark.spark_heavy
def test_model_is_loaded_once_per_python_worker(spark, inter, tmp_path):
    from recsys_lib.spark import scoring
    EASE(l2=50).fit(inter).save(tmp_path/'m')
    key, _ = scoring.model_payload(tmp_path/'m')
    # many small blocks, several partitions, two jobs: each worker process loads the model at most once
    for _ in range(2):
        assert scoring.recommend_spark(tmp_path/'m', k=3, block_users=5, partitions=6, spark=spark).count() > 0

    def loads(batches):
        for b in batches: yield pd.DataFrame({'pid': [os.getpid()] * len(b), 'loads': [scoring.model_loads().get(key, 0)] * len(b)})
    scoring._local_python(spark)
    seen = spark.range(0, 64, numPartitions=16).mapInPandas(loads, 'pid long, loads long').toPandas()
    assert seen.loads.max() == 1, seen.drop_duplicates()
    assert key not in scoring.model_loads()  # the driver never loads the model


@pytest.mark.spark_heavy
def test_output_files_are_hash_buckets(spark, inter, tmp_path):
    from pyspark.sql import functions as F
    from recsys_lib.spark.scoring import batch_recommend_spark, recommend_spark
    EASE(l2=50).fit(inter).save(tmp_path/'m')
    df = recommend_spark(tmp_path/'m', k=2, partitions=3, spark=spark)
    assert df.where(F.spark_partition_id() != F.expr('pmod(hash(user_id), 3)')).count() == 0
    m = batch_recommend_spark(tmp_path/'m', tmp_path/'out', k=2, partitions=3, spark=spark)
    for f in m['files']:
        b = int(f[len('part-'):-len('.parquet')])
        part = pd.read_parquet(tmp_path/'out'/f)
        buckets = spark.createDataFrame(part[['user_id']]).select(F.expr('pmod(hash(user_id), 3)').alias('b')).distinct().toPandas()
        assert buckets.b.tolist() == [b]
        assert part.user_id.is_monotonic_increasing  # users sorted inside a file: reruns give the same bytes


@pytest.mark.spark_heavy
def test_publish_is_atomic_and_reruns_replace(spark, inter, tmp_path):
    from recsys_lib.spark.scoring import batch_recommend_spark
    model = Popularity().fit(_cold_split(inter))
    model.save(tmp_path/'m')
    users = spark.createDataFrame(pd.DataFrame({'user_id': [*inter.user_map.ids[:50].tolist(), 10**9]}))
    m = batch_recommend_spark(tmp_path/'m', tmp_path/'out', users, k=3, spark=spark)
    assert (m['users'], m['fallback_users']) == (51, 21)  # 20 cold users and one unknown
    assert m['rows'] == len(read_recommendations(tmp_path/'out')) == 51 * 3
    assert read_recommendations(tmp_path/'out').fallback.sum() == 21 * 3
    before = {f: sha256_file(tmp_path/'out'/f) for f in m['files']}
    assert batch_recommend_spark(tmp_path/'m', tmp_path/'out', users, k=3, spark=spark)['files'] == before
    # a job that fails in the executors leaves the published output as it was, and no temporary folder
    bad = spark.createDataFrame([(1,), (None,)], 'user_id long')
    with pytest.raises(Exception, match='null user_id'):
        batch_recommend_spark(tmp_path/'m', tmp_path/'out', bad, k=3, spark=spark)
    assert json.loads((tmp_path/'out'/'_manifest.json').read_text())['files'] == before
    assert sorted(os.listdir(tmp_path)) == ['m', 'out']
    # a damaged artifact is refused on the driver, before any job
    (tmp_path/'m'/'config.json').write_text('{}')
    with pytest.raises(Exception, match='does not match its SHA-256'):
        batch_recommend_spark(tmp_path/'m', tmp_path/'out2', k=3, spark=spark)
    assert not (tmp_path/'out2').exists()
