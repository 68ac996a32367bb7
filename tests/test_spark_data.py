"recsys_lib.spark.data against the pandas layer: same messages, rows, codes and split parts on the same data."
import numpy as np
import pandas as pd
import pytest

pytest.importorskip('pyspark')

from recsys_lib.core import DataError
from recsys_lib.data import IdMap, Interactions, binarize, k_core, read_interactions, validate_interactions
from recsys_lib.split import leave_last_out, temporal_split
from recsys_lib.synthetic import SYNTHETIC_PRESETS, make_synthetic
from recsys_lib.spark import data as sd

CANON = ['user_id', 'item_id', 'timestamp', 'weight']


def message(f, df, **kw):
    try: f(df, **kw)
    except DataError as e: return str(e)
    return None


RAW = pd.DataFrame({'user_id': [1, 1, 2], 'item_id': ['a', 'b', 'a'], 'timestamp': [1700000000, 1700000060, 1700000120]})
DUPS = pd.concat([RAW, RAW.iloc[[0, 0]]], ignore_index=True)
ERROR_CASES = {
    'missing column': RAW.drop(columns='item_id'),
    'null int ids': RAW.assign(user_id=[1, None, 2]),
    'null string ids': RAW.assign(item_id=['a', None, 'b']),
    'boolean ids': RAW.assign(user_id=[True, False, True]),
    'non-integer ids': RAW.assign(user_id=[1.5, 1, 2.25]),
    'non-numeric weight': RAW.assign(weight=['1', 'x', '2']),
    "'nan' text weight": RAW.assign(weight=['1', 'nan', 'inf']),
    'non-finite weight': RAW.assign(weight=[1, np.inf, np.nan]),
    'negative weight': RAW.assign(weight=[1, -2, 1]),
    'negative float weight': RAW.assign(weight=[-1.5, 2.0, -3.0]),
    'missing numeric timestamp': RAW.assign(timestamp=[1, None, 2]),
    'missing text timestamp': RAW.assign(timestamp=['2024-01-01', None, '2024-01-02']),
    'unparseable timestamp': RAW.assign(timestamp=['2024-01-01', 'yesterday', 'soon']),
    'duplicates': DUPS,
    'duplicates without time': DUPS.drop(columns='timestamp').assign(item_id=[5, 6, 5, 5, 5]),
    'first of several errors': RAW.assign(user_id=[1, None, 2], weight=[-1, 1, 1]),
}


QUICK = ('null int ids', 'non-numeric weight', 'unparseable timestamp', 'duplicates')


def test_validation_messages_match_pandas_quick(spark):
    "A few data errors read the same from pandas and Spark (the quick, unmarked JVM test; the full set is below)."
    for name in QUICK:
        case = ERROR_CASES[name]
        expected, got = message(validate_interactions, case), message(sd.validate_interactions_spark, spark.createDataFrame(case))
        assert expected is not None and got is not None, (name, expected, got)  # both must reject the rows before their words compare
        assert got == expected, name
    assert sd.validate_interactions_spark(spark.createDataFrame(RAW)).toPandas().equals(validate_interactions(RAW).astype({'timestamp': 'datetime64[us]'}))


@pytest.mark.spark_heavy
def test_validation_messages_match_pandas(spark):
    "Every data error, raised by pandas and by Spark on the same rows, reads the same."
    for name, case in ERROR_CASES.items():
        expected = message(validate_interactions, case)
        assert expected is not None, name
        assert message(sd.validate_interactions_spark, spark.createDataFrame(case)) == expected, name
    empty = spark.createDataFrame([], 'user_id bigint, item_id string')
    assert message(sd.validate_interactions_spark, empty) == message(validate_interactions, RAW.iloc[:0]) == "the interaction table is empty (0 rows)"
    assert message(sd.validate_interactions_spark, spark.createDataFrame(RAW), duplicates='drop') == message(validate_interactions, RAW, duplicates='drop')


@pytest.mark.spark_heavy
def test_spark_only_messages(spark):
    "Cases pandas cannot express the same way (or fails on with a non-DataError) still get a clear DataError."
    df = spark.createDataFrame(RAW)
    with pytest.raises(DataError, match=r"column 'user_id' has dtype date; expected integer or string ids"):
        sd.validate_interactions_spark(df.withColumn('user_id', df.timestamp.cast('timestamp').cast('date')))
    # pandas raises OutOfBoundsDatetime here (see the report); Spark calls it unparseable
    with pytest.raises(DataError, match=r"1 unparseable values \(row 0: 100000000000\)"):
        sd.validate_interactions_spark(spark.createDataFrame(RAW.assign(timestamp=[10**11, 1, 2])))
    with pytest.raises(DataError, match="expected a Spark DataFrame"):
        sd.validate_interactions_spark(RAW)


@pytest.mark.spark_heavy
def test_canonical_frames_match_pandas(spark):
    zones = RAW.assign(timestamp=['2024-01-01T00:00:00+01:00', '2024-01-01', '2024-01-02 10:00:00.5'], weight=['1', '2.5', '3'])
    for case in (RAW, zones, make_synthetic(**SYNTHETIC_PRESETS['tiny'])):
        got = sd.validate_interactions_spark(spark.createDataFrame(case)).toPandas()
        pd.testing.assert_frame_equal(got.astype({'timestamp': 'datetime64[ns]'}), validate_interactions(case), check_dtype=False)
    dups = DUPS.assign(weight=[1, 1, 1, 2, 3], note=[None, 'b', 'c', 'd', 'e'])
    got = sd.validate_interactions_spark(spark.createDataFrame(dups), duplicates='sum').toPandas()
    pd.testing.assert_frame_equal(got.astype({'timestamp': 'datetime64[ns]'}), validate_interactions(dups, duplicates='sum'), check_dtype=False)


@pytest.mark.spark_heavy
def test_filters_match_pandas(spark):
    raw = make_synthetic(**SYNTHETIC_PRESETS['tiny']).assign(weight=lambda d: (np.arange(len(d)) % 5).astype('float32'))
    sdf = sd.validate_interactions_spark(spark.createDataFrame(raw))
    got = sd.k_core_spark(sd.binarize_spark(sdf, 2), min_user=10, min_item=8).toPandas()
    want = k_core(binarize(Interactions.from_df(raw), 2), min_user=10, min_item=8).df
    assert 0 < len(want) < len(raw)
    pd.testing.assert_frame_equal(got.astype({'timestamp': 'datetime64[ns]'}), want[CANON].reset_index(drop=True), check_dtype=False)


@pytest.mark.spark_heavy
def test_id_maps_round_trip(spark, tmp_path):
    raw = make_synthetic(**SYNTHETIC_PRESETS['tiny']).assign(item_id=lambda d: 'i' + d.item_id.astype(str))
    inter = Interactions.from_df(raw)
    sdf = sd.validate_interactions_spark(spark.createDataFrame(raw))
    user_map, item_map = sd.fit_id_maps_spark(sdf)
    assert user_map == inter.user_map and item_map == inter.item_map
    enc = sd.encode_spark(sdf, user_map, item_map).toPandas()
    assert enc.user_code.tolist() == inter.df.user_idx.tolist() and enc.item_code.tolist() == inter.df.item_idx.tolist()
    for name in ('items.json', 'items.parquet'):
        # Spark-fitted map -> file -> pandas codes; pandas map -> file -> Spark codes
        assert (IdMap.load(item_map.save(tmp_path/name)).to_codes(raw.item_id) == inter.df.item_idx).all()
        back = IdMap.load(inter.item_map.save(tmp_path/('p' + name)))
        assert sd.encode_spark(sdf, user_map, back).toPandas().item_code.tolist() == inter.df.item_idx.tolist()
    new = spark.createDataFrame(pd.DataFrame({'user_id': [1, 10**6, 10**6], 'item_id': ['i1', 'i1', 'zz']}))
    with pytest.raises(DataError, match=r"column 'user_id': 2 id\(s\) not in the map \(e.g. 1000000, 1000000\)"):
        sd.encode_spark(new, user_map, item_map)
    marked = sd.encode_spark(new, user_map, item_map, unknown='mark').toPandas()
    assert marked.user_code.tolist() == user_map.to_codes([1, 10**6, 10**6], unknown='mark').tolist()
    assert marked.item_code.tolist() == item_map.to_codes(['i1', 'i1', 'zz'], unknown='mark').tolist()


@pytest.mark.spark_heavy
def test_splits_match_pandas_row_for_row(spark):
    raw = make_synthetic(**SYNTHETIC_PRESETS['tiny'])
    raw['timestamp'] = raw.timestamp.dt.floor('7D')  # many ties within users: the tie-break must be row order
    inter = Interactions.from_df(raw)
    sdf = sd.validate_interactions_spark(spark.createDataFrame(raw))
    cols = ['user_id', 'item_id', 'timestamp']
    pairs = [(sd.leave_last_out_spark(sdf, 2, 1), leave_last_out(inter, 2, 1)),
             (sd.leave_last_out_spark(sdf), leave_last_out(inter)),
             (sd.temporal_split_spark(sdf, test_quantile=0.85, valid_quantile=0.7), temporal_split(inter, test_quantile=0.85, valid_quantile=0.7)),
             (sd.temporal_split_spark(sdf, test_start='2024-10-01'), temporal_split(inter, test_start='2024-10-01'))]
    for got, want in pairs:
        for a, b in zip(got, want):
            a = a.toPandas()[cols].astype({'timestamp': 'datetime64[ns]'}).sort_values(cols).reset_index(drop=True)
            assert a.equals(b.df[cols].sort_values(cols).reset_index(drop=True))
        pd.testing.assert_frame_equal(got.summary(), want.summary(), check_dtype=False)
    with pytest.raises(DataError, match="give exactly one of test_start and test_quantile"):
        sd.temporal_split_spark(sdf)


@pytest.mark.spark_heavy
def test_exact_quantile_beyond_the_approximation(spark):
    "The bracket search finds exact order statistics even where percentile_approx alone would be off."
    vals = np.sort(np.random.default_rng(0).integers(1.6e9, 1.7e9, 20_000)) * 1_000_000
    us = spark.createDataFrame(pd.DataFrame({'us': vals}).sample(frac=1, random_state=0))
    ranks = [0, 1, 7_777, 7_778, 19_999]
    assert sd._order_stats(us, ranks, len(vals), accuracy=100) == {r: int(vals[r]) for r in ranks}


@pytest.mark.spark_heavy
def test_read_interactions_spark(spark, tmp_path):
    raw = make_synthetic(**SYNTHETIC_PRESETS['tiny']).rename(columns={'user_id': 'uid'})
    raw.to_parquet(tmp_path/'ns.parquet')  # pandas' default: nanosecond timestamps, which Spark cannot read
    with pytest.raises(DataError, match="stores timestamps in nanoseconds"):
        sd.read_interactions_spark(tmp_path/'ns.parquet')
    raw.to_parquet(tmp_path/'x.parquet', coerce_timestamps='us'); raw.to_csv(tmp_path/'x.csv', index=False); raw.to_csv(tmp_path/'x.tsv', sep='\t', index=False)
    spark.createDataFrame(raw).repartition(3).write.parquet(str(tmp_path/'parts'))
    want = read_interactions(tmp_path/'x.parquet', columns={'uid': 'user_id'}).df[CANON]
    for path in ('x.parquet', 'x.csv', 'x.tsv'):
        got = sd.read_interactions_spark(tmp_path/path, spark, columns={'uid': 'user_id'}).toPandas()
        pd.testing.assert_frame_equal(got.astype({'timestamp': 'datetime64[ns]'}), want, check_dtype=False)
    got = sd.read_interactions_spark(str(tmp_path/'parts'), columns={'uid': 'user_id'}).toPandas()
    assert sorted(map(tuple, got[['user_id', 'item_id']].values)) == sorted(map(tuple, want[['user_id', 'item_id']].values))
    with pytest.raises(DataError, match="x.parquet: missing column"):
        sd.read_interactions_spark(tmp_path/'x.parquet')
    with pytest.raises(DataError, match="does not exist"):
        sd.read_interactions_spark(tmp_path/'nope.csv')


@pytest.mark.spark_heavy
def test_to_interactions(spark):
    raw = make_synthetic(**SYNTHETIC_PRESETS['tiny'])
    sdf = sd.validate_interactions_spark(spark.createDataFrame(raw))
    inter, want = sd.to_interactions(sdf), Interactions.from_df(raw)
    assert inter.fingerprint() == want.fingerprint() and inter.user_map == want.user_map
    test = sd.leave_last_out_spark(sdf).test
    part = sd.to_interactions(test, user_map=inter.user_map, item_map=inter.item_map)
    assert part.n_items == inter.n_items and len(part) == raw.user_id.nunique()
    with pytest.raises(DataError, match=r"5,000 rows of about \d+ bytes.*SparkALS"):
        sd.to_interactions(sdf, max_bytes=10_000)
