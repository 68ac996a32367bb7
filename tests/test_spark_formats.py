"""The same files through `read_interactions` (pandas) and `read_interactions_spark`: the same ids, id kinds, rows,
warnings and errors. The id rule is the heart of it: an id column is int64 only when every value round-trips exactly,
else the whole column is text, byte for byte ('007' and '7' are two users)."""
import gzip, inspect, logging

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip('pyspark')

from recsys_lib.core import DataError
from recsys_lib.data import READ_OPTIONS, read_interactions
from recsys_lib.spark import data as sd

pytestmark = [pytest.mark.filterwarnings('ignore:PySpark does not yet fully support pandas'),  # PySpark 4.3 on pandas 3
              pytest.mark.filterwarnings('ignore:The copy keyword is deprecated')]

CANON = ['user_id', 'item_id', 'timestamp', 'weight']


def _parquet(table: dict):
    return lambda path: pq.write_table(pa.table(table), path)


def _gzip(text: str):
    def write(path):
        with gzip.open(path, 'wt') as f: f.write(text)
    return write


def _parts(path):
    "A folder as Spark writes it: part files, _SUCCESS, and a .crc checksum beside each part (Hadoop checks them)."
    from recsys_lib.spark.session import spark_session
    spark_session().createDataFrame(pd.DataFrame({'user_id': [0, 0, 1, 1], 'item_id': [1, 2, 1, 2]})).coalesce(1).write.parquet(str(path))
    assert (path/'_SUCCESS').exists() and any(f.name.endswith('.crc') for f in path.iterdir())


def _text_parts(path):
    path.mkdir()
    (path/'part-00000.csv').write_text('user_id,item_id\n1,2\n')


RATED = "user_id,item_id,rating\n1,1,5\n1,2,2\n2,1,4\n2,2,5\n3,1,1\n"
ML_ROWS = [(1, 10, 4, 978300760), (1, 20, 2, 978300761), (2, 10, 5, 978300762)]

# name: (file name, contents or writer, read options, what must come out: {'user_id': [...], ...} or an error fragment)
CASES = {
    # the quick set (default run): leading zeros, 64-bit hashes in Parquet, ';' sniffed, a repeated header, a rating column
    'leading zeros': ('zeros.csv', "user_id,item_id,rating\n007,1,5\n7,1,4\n0042,2,3\n", {},
                      {'user_id': ['007', '7', '0042'], 'item_id': [1, 1, 2], 'weight': [5.0, 4.0, 3.0]}),
    'uint64 hashes': ('hashes.parquet', _parquet({'user_id': pa.array([2**64 - 1, 2**63, 5], pa.uint64()),
                                                  'item_id': pa.array([1, 2, 3], pa.uint64())}), {},
                      {'user_id': ['18446744073709551615', '9223372036854775808', '5'], 'item_id': [1, 2, 3]}),
    'semicolons': ('semi.csv', "user_id;item_id;timestamp\n1;10;1700000000\n2;10;1700000060\n", {}, {'user_id': [1, 2], 'item_id': [10, 10]}),
    'repeated header': ('again.csv', "user_id,item_id\n1,2\nuser_id,item_id\n3,4\n", {}, "line 3 repeats the header (user_id, item_id)"),
    'rating threshold': ('rated.csv', RATED, {'rating_threshold': 4}, {'user_id': [1, 2, 2], 'weight': [1.0, 1.0, 1.0]}),
}
SLOW = {
    'NA is an id': ('na.csv', "user_id,item_id\n-3,NA\n12,null\n", {}, {'user_id': [-3, 12], 'item_id': ['NA', 'null']}),
    'empty id': ('empty_id.csv', "user_id,item_id\n1,2\n,3\n", {}, "column 'user_id' has 1 null ids (row 1: nan)"),
    'not plain ints': ('plus.csv', "user_id,item_id\n+7,1\n7.0,2\n 7,3\n-0,4\n", {}, {'user_id': ['+7', '7.0', ' 7', '-0']}),
    'past int64': ('big.csv', f"user_id,item_id\n{2**63},1\n5,2\n", {}, {'user_id': [str(2**63), '5']}),
    'int64 edges': ('edges.csv', f"user_id,item_id\n{2**63 - 1},1\n{-2**63},2\n0,3\n", {}, {'user_id': [2**63 - 1, -2**63, 0]}),
    'unicode kept exact': ('uni.csv', "user_id,item_id\nJosé,ß\nJose\u0301,ss\n用户,١\n", {},
                           {'user_id': ['José', 'Jose\u0301', '用户'], 'item_id': ['ß', 'ss', '١']}),
    'quoted fields': ('quoted.csv', 'user_id,item_id\n"a,b",1\n"say ""hi""",2\n', {}, {'user_id': ['a,b', 'say "hi"']}),
    'small uint64': ('small.parquet', _parquet({'user_id': pa.array([1, 2], pa.uint64()), 'item_id': [1, 2]}), {}, {'user_id': [1, 2]}),
    'string ids in parquet': ('strings.parquet', _parquet({'user_id': ['007', '7'], 'item_id': ['1', '2']}), {},
                              {'user_id': ['007', '7'], 'item_id': [1, 2]}),
    'integral floats': ('floats.parquet', _parquet({'user_id': [1.0, 2.0], 'item_id': [3.0, 2.0**53 - 1]}), {}, {'item_id': [3, 2**53 - 1]}),
    'floats past 2**53': ('floats53.parquet', _parquet({'user_id': [1.0, 2.0], 'item_id': [2.0**53, 3.0]}), {},
                          "column 'item_id' holds 1 ids stored as floats at or above 2**53 (row 0: 9007199254740992.0)"),
    'fractional floats': ('frac.parquet', _parquet({'user_id': [1.5, 2.0], 'item_id': [1, 2]}), {}, "holds 1 non-integer numbers (row 0: 1.5)"),
    'upper-case suffix': ('x.PARQUET', _parquet({'user_id': [1, 2], 'item_id': [3, 4]}), {}, {'user_id': [1, 2]}),
    'gzip, any case': ('g.CSV.gz', _gzip("user_id\titem_id\n1\t2\n"), {}, {'user_id': [1], 'item_id': [2]}),
    'part files': ('parts', _parts, {}, {'user_id': [0, 0, 1, 1]}),
    'folder of text': ('textparts', _text_parts, {}, "a folder is read when it holds Parquet part files"),
    'tabs sniffed': ('tabs.tsv', "user_id\titem_id\tweight\n1\t2\t0.5\n", {}, {'weight': [0.5]}),
    'pipes sniffed': ('pipes.txt', "user_id|item_id\n1|2\n", {}, {'item_id': [2]}),
    'wrong sep given': ('comma.csv', "user_id,item_id\n1,2\n", {'sep': ';'}, "is the file separated by ','? pass sep=','"),
    'ambiguous sep': ('amb.csv', "a,b;c\n1,2;3\n", {}, "cannot tell the separator"),
    'no header': ('nohead.tsv', "196\t242\t3\t881250949\n186\t302\t3\t891717742\n", {}, "looks like data, not a header"),
    'names in order': ('nohead2.tsv', "196\t242\t3\t881250949\n186\t302\t3\t891717742\n",
                       {'columns': ['user_id', 'item_id', 'rating', 'timestamp']}, {'user_id': [196, 186], 'weight': [3.0, 3.0]}),
    'rename map': ('renamed.csv', "uid,sku,ts\nu1,10,1700000000\n", {'columns': {'uid': 'user_id', 'sku': 'item_id', 'ts': 'timestamp'}},
                   {'user_id': ['u1']}),
    'absent rename': ('renamed2.csv', "uid,sku\nu1,10\n", {'columns': {'user': 'user_id'}}, "column(s) ['user'] named in `columns` are not in the file"),
    'weight none': ('rated2.csv', RATED, {'weight_column': 'none'}, {'weight': [1.0] * 5}),
    'weight named': ('stars.csv', "user_id,item_id,stars\n1,1,5\n", {'weight_column': 'stars'}, {'weight': [5.0]}),
    'weight missing': ('stars2.csv', "user_id,item_id,stars\n1,1,5\n", {'weight_column': 'plays'}, "weight_column='plays' is not a column"),
    'weight and rating': ('both.csv', "user_id,item_id,weight,rating\n1,1,2,5\n", {'weight_column': 'rating'}, "also has a 'weight' column"),
    'threshold without weight': ('plain.csv', "user_id,item_id\n1,1\n", {'rating_threshold': 4}, "needs a weight or rating column"),
    'k-core': ('rated3.csv', RATED, {'min_user_interactions': 2, 'min_item_interactions': 2}, {'user_id': [1, 1, 2, 2]}),
    'k-core leaves none': ('rated4.csv', RATED, {'min_user_interactions': 9}, "leaves no interactions"),
    'milliseconds': ('ms.csv', "user_id,item_id,timestamp\n1,2,1700000000123\n", {'timestamp_unit': 'ms'},
                     {'timestamp': [pd.Timestamp('2023-11-14 22:13:20.123')]}),
    'ms read as seconds': ('ms2.csv', "user_id,item_id,timestamp\n1,2,1700000000123\n", {}, "pass timestamp_unit='ms'"),
    'ISO times': ('iso.csv', "user_id,item_id,timestamp\n1,2,2024-01-01T10:00:00+01:00\n1,3,2024-01-02\n", {},
                  {'timestamp': [pd.Timestamp('2024-01-01 09:00'), pd.Timestamp('2024-01-02')]}),
    'bad time': ('badtime.csv', "user_id,item_id,timestamp\n1,2,2024-01-01\n2,3,soon\n", {}, "1 unparseable values (row 1: 'soon')"),
    'negative weight': ('neg.csv', "user_id,item_id,weight\n1,10,1\n2,11,-3\n", {}, "column 'weight' has 1 negative values (row 1: -3)"),
    'text weight': ('heavy.csv', "user_id,item_id,weight\n1,10,1\n2,11,heavy\n", {}, "non-numeric values (row 1: 'heavy')"),
    'nan weight': ('nanw.csv', "user_id,item_id,weight\n1,10,1\n2,11,nan\n", {}, "missing or non-finite values (row 1: nan)"),
    'duplicates': ('dups.csv', "user_id,item_id\n1,10\n1,10\n", {}, "1 duplicate (user_id, item_id) rows (row 0: (1, 10), row 1: (1, 10))"),
    'duplicates summed': ('dups2.csv', "user_id,item_id,weight\n1,10,1\n1,10,2\n", {'duplicates': 'sum'}, {'weight': [3.0]}),
    'empty table': ('header_only.csv', "user_id,item_id\n", {}, "the interaction table is empty (0 rows)"),
    'empty file': ('nothing.csv', "", {}, "is empty"),
    'missing column': ('noitem.csv', "user_id,timestamp\n1,1700000000\n", {}, "missing column(s) 'item_id'"),
    'short line': ('short.csv', "user_id,item_id,weight\n1,2,3\n5,6\n", {'sep': ','}, "could not read"),
    'MovieLens u.data': ('u.data', ''.join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in ML_ROWS), {},
                         {'user_id': [1, 1, 2], 'weight': [4.0, 2.0, 5.0], 'timestamp': [pd.Timestamp('2000-12-31 22:12:40'),
                          pd.Timestamp('2000-12-31 22:12:41'), pd.Timestamp('2000-12-31 22:12:42')]}),
    'MovieLens ratings.dat': ('ratings.dat', ''.join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in ML_ROWS), {}, {'item_id': [10, 20, 10]}),
    'MovieLens ratings.csv': ('ratings.csv', "userId,movieId,rating,timestamp\n" + ''.join(f"{u},{i},{r}.5,{t}\n" for u, i, r, t in ML_ROWS),
                              {}, {'weight': [4.5, 2.5, 5.5]}),
    'RecBole .inter': ('ml.inter', "user_id:token\titem_id:token\trating:float\ttimestamp:float\n" +
                       ''.join(f"{u}\t00{i}\t{r}\t{t}\n" for u, i, r, t in ML_ROWS), {}, {'user_id': [1, 1, 2], 'item_id': ['0010', '0020', '0010']}),
    'RecBole renamed': ('renamed.inter', "uid:token\tiid:token\n1\t2\n", {'columns': {'uid:token': 'user_id', 'iid:token': 'item_id'}},
                        {'user_id': [1], 'item_id': [2]}),
    'extra columns': ('extra.csv', "user_id,item_id,rating,country\n1,2,5,fr\n", {'weight_column': 'none'}, {'weight': [1.0]}),
    'RecBole untyped': ('plain.inter', "user_id\titem_id\n1\t2\n", {}, "are not in RecBole's name:type form"),
    'unknown format': ('x.xlsx', "PK", {}, "cannot tell the format of x.xlsx; supported: parquet"),
    'not parquet': ('fake.parquet', "user_id,item_id\n", {}, "is not a Parquet file"),
    'missing file': ('absent.csv', None, {}, "absent.csv does not exist"),
    'bad unit': ('semi2.csv', "user_id;item_id\n1;2\n", {'timestamp_unit': 'min'}, "timestamp_unit='min'; expected one of s, ms, us, ns"),
    'bad format name': ('semi3.csv', "user_id;item_id\n1;2\n", {'file_format': 'excel'}, "file_format='excel'; supported: parquet"),
}


@pytest.fixture(scope='module')
def files(spark, tmp_path_factory):
    d = tmp_path_factory.mktemp('formats')
    for name, contents, _, _ in {**CASES, **SLOW}.values():
        if contents is None: continue
        if callable(contents): contents(d/name)
        else: (d/name).write_text(contents)
    return d


def outcome(read, path, **options):
    "What a reader makes of a file: the canonical columns as plain values and the id kinds, or the error message."
    try: df = read(path, **options)
    except DataError as e: return str(e)
    df = df.df if hasattr(df, 'df') else df.toPandas()  # Interactions, or a Spark DataFrame
    cols = [c for c in CANON if c in df]
    out = {c: df[c].tolist() for c in cols}
    if 'timestamp' in out: out['timestamp'] = [pd.Timestamp(t).as_unit('ns') for t in out['timestamp']]
    out['kinds'] = {c: 'int' if pd.api.types.is_integer_dtype(df[c]) else 'str' for c in ('user_id', 'item_id')}
    return out


def check_case(spark, files, name, case, caplog):
    fname, _, options, expected = case
    with caplog.at_level(logging.INFO):
        local = outcome(read_interactions, files/fname, **options)
        said_local = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == 'recsys_lib.data' and r.getMessage().startswith(fname)]
        caplog.clear()
        got = outcome(lambda p, **o: sd.read_interactions_spark(p, spark, **o), files/fname, **options)
        said_spark = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == 'recsys_lib.spark.data' and r.getMessage().startswith(fname)]
    if isinstance(expected, str):
        assert isinstance(got, str) and expected in got, (name, got)
        # errors read the same, except where the parsers word a malformed line differently
        assert got == local if name != 'short line' else local.startswith(got.split(': ', 1)[0]), (name, got, local)
        return
    assert isinstance(got, dict), (name, got)
    for col, values in expected.items():
        assert got[col] == values, (name, col, got[col])
        if col in got['kinds']: assert got['kinds'][col] == ('int' if all(isinstance(v, int) for v in values) else 'str'), name
    assert got == local, (name, got, local)
    assert said_spark == said_local, (name, said_spark, said_local)  # the 'rating' line, the unused-columns warning


@pytest.mark.parametrize('name', list(CASES))
def test_same_file_same_result(spark, files, name, caplog):
    "The quick set: both readers give the same ids, kinds, rows and errors."
    check_case(spark, files, name, CASES[name], caplog)


@pytest.mark.slow
@pytest.mark.parametrize('name', list(SLOW))
def test_same_file_same_result_everywhere(spark, files, name, caplog):
    check_case(spark, files, name, SLOW[name], caplog)


def test_spark_reader_takes_the_read_options():
    "Every `read_interactions` option, with its default, is an argument of `read_interactions_spark` (and of nothing else)."
    params = inspect.signature(sd.read_interactions_spark).parameters
    spark_only = {'path', 'spark', 'spark_options'}
    assert {k: p.default for k, p in params.items() if k not in spark_only} == READ_OPTIONS
    assert {k: p.default for k, p in inspect.signature(read_interactions).parameters.items() if k != 'path'} == READ_OPTIONS


@pytest.mark.slow
def test_unused_columns_are_named_once(spark, files, caplog, tmp_path):
    path = tmp_path/'extra.csv'
    path.write_text("user_id,item_id,rating,country,device\n1,2,5,fr,tv\n")
    with caplog.at_level(logging.INFO):
        sd.read_interactions_spark(path, spark, weight_column='none').count()
    said = [r.getMessage() for r in caplog.records if r.name == 'recsys_lib.spark.data' and r.levelno == logging.WARNING]
    assert said == ["extra.csv: column(s) 'rating', 'country', 'device' not used (only user_id, item_id, timestamp, weight are)"]


@pytest.mark.slow
def test_csv_and_parquet_of_the_same_ids_agree(spark, tmp_path):
    "Hashes written as text and as unsigned Parquet integers give the same ids, codes and fingerprint on both engines."
    hashes = np.array([2**64 - 1, 2**63, 12345, 2**63 - 1], 'uint64')
    pq.write_table(pa.table({'user_id': pa.array(hashes), 'item_id': pa.array([1, 2, 1, 2], pa.int64())}), tmp_path/'h.parquet')
    (tmp_path/'h.csv').write_text('user_id,item_id\n' + ''.join(f"{h},{i}\n" for h, i in zip(hashes.tolist(), [1, 2, 1, 2])))
    inters = [read_interactions(tmp_path/f) for f in ('h.parquet', 'h.csv')]
    inters += [sd.to_interactions(sd.read_interactions_spark(tmp_path/f, spark)) for f in ('h.parquet', 'h.csv')]
    for inter in inters:
        assert inter.user_map == inters[0].user_map and inter.fingerprint() == inters[0].fingerprint()
    assert inters[0].df.user_id.tolist() == [str(h) for h in hashes.tolist()]
