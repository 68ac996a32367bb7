"""Bad interaction files, read for real from disk by both engines: the pandas and the Spark data layer refuse each
(every validation error of the data layer, as CSV and as Parquet) with the same message, which names the file, the
column, the count and an example row; and a training run given such a file fails on that one line, registering
nothing."""
import subprocess

import pytest

from conftest import BIN, ROOT
from test_run_faults import mlflow_client, one_line_error
from test_spark_data import ERROR_CASES   # the data layer's error cases, as in-memory frames

BAD_FILES = {  # file -> (contents, what the message must say)
    'null_user.csv': ('user_id,item_id,timestamp\n1,10,2024-01-01\n,11,2024-01-02\n', "column 'user_id' has 1 null ids (row 1: nan)"),
    'negative_weight.csv': ('user_id,item_id,weight\n1,10,1\n2,11,-3\n', "column 'weight' has 1 negative values (row 1: -3)"),
    'bad_time.csv': ('user_id,item_id,timestamp\n1,10,2024-01-01\n2,11,not a date\n', "column 'timestamp' has 1 unparseable values (row 1: 'not a date')"),
    'duplicates.csv': ('user_id,item_id\n1,10\n1,10\n', "1 duplicate (user_id, item_id) rows (row 0: (1, 10), row 1: (1, 10))"),
    'no_item.csv': ('user_id,timestamp\n1,2024-01-01\n', "missing column(s) 'item_id'"),
    'empty.csv': ('user_id,item_id\n', "the interaction table is empty (0 rows)"),
    'text_weight.csv': ('user_id,item_id,weight\n1,10,1\n2,11,heavy\n', "column 'weight'"),
}


@pytest.fixture(scope='module')
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp('bad')
    for name, (text, _) in BAD_FILES.items(): (d/name).write_text(text)
    return d


def _message(read, path) -> str:
    from recsys_lib.core import DataError
    with pytest.raises(DataError) as e: read(path)
    return str(e.value)


@pytest.mark.parametrize('name', list(BAD_FILES))
def test_pandas_and_spark_refuse_with_the_same_message(name, bad_files):
    from recsys_lib.data import read_interactions
    from recsys_lib.spark.data import read_interactions_spark
    local, spark = _message(read_interactions, bad_files/name), _message(read_interactions_spark, bad_files/name)
    assert local == spark
    assert local.startswith(f"{bad_files/name}: ") and BAD_FILES[name][1] in local


def test_training_on_a_bad_file_fails_on_one_line_and_registers_nothing(bad_files, clean_env, tmp_path):
    r = subprocess.run([str(BIN/'recsys'), 'run', str(ROOT/'pipelines'/'train.ipynb'), '-p', 'data_path', str(bad_files/'negative_weight.csv'),
                        '-p', 'registered_model', 'never', '--no-progress'], env=clean_env, capture_output=True, text=True, timeout=600)
    line = one_line_error(r, 1)
    assert line.startswith('recsys run: failed:') and "column 'weight' has 1 negative values (row 1: -3)" in line
    assert mlflow_client(clean_env).search_registered_models() == []


@pytest.mark.parametrize('name', list(ERROR_CASES))
def test_every_validation_error_reads_the_same_from_parquet(name, tmp_path):
    "Each data-layer error case, written to a real Parquet file and read by both engines."
    from recsys_lib.data import read_interactions
    from recsys_lib.spark.data import read_interactions_spark
    path = tmp_path/f"{name.replace(' ', '_')}.parquet"
    ERROR_CASES[name].to_parquet(path, index=False)
    local, spark = _message(read_interactions, path), _message(read_interactions_spark, path)
    assert local == spark and local.startswith(f"{path}: ")
