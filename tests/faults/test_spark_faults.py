"""Spark faults: a scoring task that fails once is retried and the answers do not change; a machine without Java
gets `SparkUnavailable` saying that Spark 4 needs Java 17, not Py4J's bare "Java gateway process exited".
"""
import os, subprocess, sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip('pyspark')

from recsys_lib.data import Interactions
from recsys_lib.ease import EASE
from recsys_lib.inference import batch_recommend, read_recommendations
from recsys_lib.synthetic import SYNTHETIC_PRESETS, make_synthetic

pytestmark = [pytest.mark.filterwarnings('ignore:PySpark does not yet fully support pandas'),  # PySpark 4.3 on pandas 3
              pytest.mark.filterwarnings('ignore:The copy keyword is deprecated')]


@pytest.fixture
def retrying_spark(monkeypatch):
    "A session on `local[2,3]`: 2 threads, each task allowed 3 attempts (`local[N]` allows one). Stopped afterwards."
    from pyspark import SparkContext
    from recsys_lib.settings import load_settings
    from recsys_lib.spark.session import spark_session
    # spark_session() would return a running session as it is, and its master cannot change: stop it first
    if SparkContext._active_spark_context is not None: SparkContext._active_spark_context.stop()
    monkeypatch.setenv('RECSYS_LOCAL_SPARK_MASTER', 'local[2,3]')
    spark = spark_session(load_settings('local'))
    assert spark.sparkContext.master == 'local[2,3]'
    yield spark
    spark.stop()


def failed_tasks(spark, group:str) -> int:
    "Task attempts that failed in the jobs of `group`, as the driver's status tracker counted them."
    tracker = spark.sparkContext.statusTracker()
    stages = [s for j in tracker.getJobIdsForGroup(group) for s in tracker.getJobInfo(j).stageIds]
    return sum(tracker.getStageInfo(s).numFailedTasks for s in stages)


def rows(df) -> list:
    "(user, item, rank) as plain Python values, sorted."
    return sorted(zip(df.user_id.tolist(), df.item_id.tolist(), df['rank'].astype(int).tolist()))


def test_scoring_task_that_fails_once_is_retried_with_the_same_answers(retrying_spark, tmp_path):
    from recsys_lib.spark.scoring import recommend_spark
    model = EASE(l2=50).fit(Interactions.from_df(make_synthetic(**SYNTHETIC_PRESETS['tiny'], seed=0)))
    model.save(tmp_path/'ease')
    marker = str(tmp_path/'failed-once')

    def fail_once(batches):
        # runs on the executor in the scoring task (same stage, no shuffle between): its first attempt on partition 0
        # passes one scored batch on, then dies; the marker proves the fault fired
        from pyspark import TaskContext
        ctx = TaskContext.get()
        for i, pdf in enumerate(batches):
            if i == 1 and ctx.partitionId() == 0 and ctx.attemptNumber() == 0:
                open(marker, 'x').close()
                raise RuntimeError('injected fault: first attempt of partition 0')
            yield pdf

    scored = recommend_spark(tmp_path/'ease', k=5, block_users=16, partitions=2, spark=retrying_spark)
    retrying_spark.conf.set('spark.sql.execution.arrow.maxRecordsPerBatch', '40')  # several batches per task
    retrying_spark.sparkContext.setJobGroup('fault', 'scoring with an injected task failure')
    got = scored.mapInPandas(fail_once, scored.schema).toPandas()
    assert os.path.exists(marker) and failed_tasks(retrying_spark, 'fault') == 1
    batch_recommend(model, tmp_path/'local', k=5, progress=False)
    want = read_recommendations(tmp_path/'local')
    assert len(got) == len(want) == len(model.trained_users) * 5  # the failed attempt's batch is not in twice
    assert rows(got) == rows(want)
    order = lambda d: d.sort_values(['user_id', 'rank']).score.to_numpy()
    np.testing.assert_allclose(order(got), order(want), rtol=1e-5, atol=1e-6)


def without_java(tmp_path) -> dict:
    "This environment with no `java` on the PATH (other tools kept, through links) and JAVA_HOME naming no folder."
    shadow, dirs = tmp_path/'bin', []
    shadow.mkdir()
    for d in os.environ['PATH'].split(os.pathsep):
        if not (Path(d)/'java').exists(): dirs.append(d); continue
        for p in Path(d).iterdir():
            if p.name != 'java' and not (shadow/p.name).exists(): (shadow/p.name).symlink_to(p)
    env = {k: v for k, v in os.environ.items() if not k.startswith('RECSYS_')}
    return {**env, 'PATH': os.pathsep.join([str(shadow), *dirs]), 'JAVA_HOME': str(tmp_path/'no-jdk')}


def test_no_java_raises_spark_unavailable_naming_java_17(tmp_path):
    code = """
import shutil
assert shutil.which('java') is None, shutil.which('java')
from recsys_lib.spark.session import SparkUnavailable, spark_session
try: spark_session()
except SparkUnavailable as e: print(e)
else: raise SystemExit('a Spark session started without Java')
"""
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=without_java(tmp_path), timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'no usable Java runtime' in r.stdout and 'Java 17 or newer' in r.stdout and 'JAVA_HOME' in r.stdout, r.stdout


def test_a_malformed_text_line_is_one_data_error_not_a_padded_row(tmp_path):
    "Spark's CSV reader would pad a short line with nulls (PERMISSIVE); the reader fails on it as pandas does, naming the line."
    from recsys_lib.core import DataError
    from recsys_lib.spark.data import read_interactions_spark
    (tmp_path/'short.csv').write_text('user_id,item_id,weight\n1,2,3\n5,6\n')
    with pytest.raises(DataError, match=r"^could not read \S*short.csv: Malformed CSV record: 5,6$"):
        read_interactions_spark(tmp_path/'short.csv', sep=',')
