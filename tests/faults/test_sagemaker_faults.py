"""SageMaker faults, injected for real into the cloud path (moto's in-process AWS, and a fake SageMaker client for
the job states moto cannot produce): bad input refused before anything is staged, a job that failed, one stopped past
its max runtime, a wait past its timeout or cut by Ctrl-C, throttling answered by bounded retries, and an S3 upload
failing half-way through staging. Nothing sends traffic beyond the process."""
import json

import pytest
from botocore.awsrequest import AWSResponse

from recsys_lib import tracking
from recsys_lib.core import load_settings
from recsys_lib.params import new_notebook
from recsys_lib.sagemaker import cloud
from recsys_lib.sagemaker.cloud import AwsClients, AwsError, SubmittedJob, attach_job, aws_errors, submit_job, wait_for_job
from recsys_lib.sagemaker.local import run_local_job

from conftest import ROOT
from test_sagemaker_cloud import BUCKET, FakeSageMaker, _fake, _keys, _upload_job_outputs, aws, aws_tmp, wheel  # noqa: F401 (fixtures)


class _Body:
    "The raw body of a canned AWS answer."
    def __init__(self, data: bytes): self.data = data
    def stream(self, **kw): yield self.data


def _answer(request, status: int, body: bytes, **headers):
    return AWSResponse(request.url, status, headers, _Body(body))


def test_bad_input_is_refused_before_anything_is_staged(aws, wheel, tmp_path, monkeypatch):
    nb = ROOT/'pipelines'/'train.ipynb'
    with pytest.raises(Exception, match="parameter 'k' \\(int\\) got 'ten'"): submit_job(nb, {'k': 'ten'}, clients=aws, wheel=wheel)
    with pytest.raises(Exception, match="channel 'data': .* does not exist"):
        submit_job(nb, channels={'data': tmp_path/'missing.parquet'}, clients=aws, wheel=wheel)
    with pytest.raises(Exception, match="channel name 'code'"): submit_job(nb, channels={'code': nb}, clients=aws, wheel=wheel)
    with pytest.raises(Exception, match="SageMaker allows 2500"): submit_job(nb, {'preset': 'x' * 3000}, clients=aws, wheel=wheel)
    secret_nb = new_notebook(tmp_path/'s.ipynb', "from recsys_lib.params import Secret\ntoken: Secret = None  # API token", 'x = 1')
    with pytest.raises(Exception, match="secret parameter\\(s\\) token cannot travel"):
        submit_job(secret_nb, {'token': 'hunter2'}, clients=aws, wheel=wheel)
    monkeypatch.setenv('RECSYS_SAGEMAKER_USE_SPOT', 'yes')
    with pytest.raises(Exception, match="use_spot = yes needs checkpoint_s3_uri"): submit_job(nb, clients=aws, wheel=wheel)
    assert _keys(aws) == [] and aws.sagemaker.list_training_jobs()['TrainingJobSummaries'] == []



def test_path_parameter_naming_no_usable_data_is_refused_before_anything_is_staged(aws, wheel, tmp_path, monkeypatch):
    "A path parameter is staged as a channel, so one that names nothing the job could get is refused on this machine."
    from recsys_lib.params import ParamError
    from recsys_lib.sagemaker.schedule import schedule_job
    nb = ROOT/'pipelines'/'train.ipynb'
    monkeypatch.chdir(tmp_path)
    (tmp_path/'ratings.csv').write_text('user_id,item_id\n1,2\n')
    with pytest.raises(ParamError, match=f"parameter 'data_path': missing.csv does not exist on this machine \\({tmp_path/'missing.csv'}\\)"):
        submit_job(nb, {'data_path': 'missing.csv'}, clients=aws, wheel=wheel)
    with pytest.raises(ParamError, match="which --channel data_path already gives"):
        submit_job(nb, {'data_path': 'ratings.csv'}, channels={'data_path': f's3://{BUCKET}/other.csv'}, clients=aws, wheel=wheel)
    with pytest.raises(ParamError, match="'gs://b/x.csv'; a job reads a local file or folder"):
        submit_job(nb, {'data_path': 'gs://b/x.csv'}, clients=aws, wheel=wheel)
    # a schedule's job starts later, in SageMaker: even an existing local file is refused, with the S3 form to use
    with pytest.raises(ParamError, match=f"--channel data_path s3://{BUCKET}/recsys/data/ratings.csv -p data_path"):
        schedule_job(nb, '0 3 * * *', {'data_path': 'ratings.csv'}, clients=aws, wheel=wheel)
    assert _keys(aws) == [] and aws.sagemaker.list_training_jobs()['TrainingJobSummaries'] == []
    assert aws.sagemaker.list_pipelines()['PipelineSummaries'] == [] and aws.scheduler.list_schedules()['Schedules'] == []
    # sagemaker-local has no AWS: an S3 value is refused before a container root is made
    tmpdir = tmp_path/'tmp'; tmpdir.mkdir()
    monkeypatch.setattr(__import__('tempfile'), 'tempdir', str(tmpdir))
    with pytest.raises(ParamError, match="sagemaker-local runs on this machine without AWS"):
        run_local_job(nb, {'data_path': f's3://{BUCKET}/ratings.csv'})
    assert list(tmpdir.iterdir()) == []

def test_throttling_is_retried_with_a_bound_then_named(aws):
    clients = AwsClients.connect(load_settings('sagemaker'), max_attempts=3)
    attempts, throttled = [], {'first': 2}
    def throttle(request, **kw):
        attempts.append(request.url)
        if len(attempts) <= throttled['first']:
            return _answer(request, 400, b'{"__type": "ThrottlingException", "message": "Rate exceeded"}')
    clients.sagemaker.meta.events.register_first('before-send.sagemaker.ListTrainingJobs', throttle)
    assert clients.sagemaker.list_training_jobs()['TrainingJobSummaries'] == [] and len(attempts) == 3   # 2 throttled, then through
    attempts.clear(); throttled['first'] = 99
    with pytest.raises(AwsError, match="listing jobs: ListTrainingJobs failed: ThrottlingException: Rate exceeded"):
        with aws_errors('listing jobs'): clients.sagemaker.list_training_jobs()
    assert len(attempts) == 3                                                                               # and no more


def test_s3_upload_failing_half_way_creates_no_job(aws, wheel):
    puts = []
    def deny_second(request, **kw):
        puts.append(request.url)
        if len(puts) == 2:
            return _answer(request, 403, b'<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>')
    for events in (aws.session.events, aws.s3.meta.events): events.register_first('before-send.s3.PutObject', deny_second)
    with pytest.raises(Exception, match="AccessDenied"):
        submit_job(ROOT/'pipelines'/'train.ipynb', {'preset': 'tiny'}, clients=aws, wheel=wheel)
    assert len(puts) == 2
    assert aws.sagemaker.list_training_jobs()['TrainingJobSummaries'] == []


def test_failed_job_reports_its_reason_and_registers_nothing(aws, tmp_path, capsys):
    bad = new_notebook(tmp_path/'bad.ipynb', "registered_model: str = 'sm-bad'  # entry", 'x = 1', '1 / 0')
    local = run_local_job(bad, keep_root=True, run_root=tmp_path/'local-runs')
    assert local.status == 'failed'
    name = 'recsys-bad-20261122030000'
    _upload_job_outputs(aws, name, local.root)
    reason = (local.root/'output'/'failure').read_text().strip()
    sm = FakeSageMaker([('InProgress', 'Training'), ('Failed', 'Failed')], FailureReason=f'AlgorithmError: {reason}')
    job = SubmittedJob(name, 'training', 'sagemaker', 'bad.ipynb')
    res = attach_job(job, 'sagemaker', clients=_fake(aws, sm), poll_s=0)
    assert (res.status, res.reason) == ('failed', f'AlgorithmError: {reason}')
    assert res.notebook.is_file() and 'ZeroDivisionError' in res.notebook.read_text()   # the executed notebook came back
    assert 'version' not in res.tracked
    assert cloud._report(res) == 1 and 'ZeroDivisionError' in capsys.readouterr().err
    with pytest.raises(Exception, match="no registered model 'sm-bad'|RESOURCE_DOES_NOT_EXIST|not found"):
        tracking.load_registered_model('sm-bad', version=1, profile='sagemaker')


def test_job_past_its_max_runtime_is_stopped_not_successful(aws):
    "SageMaker stops a job at MaxRuntimeInSeconds; even if the notebook's records say it finished, it is not a success."
    local = run_local_job(ROOT/'pipelines'/'train.ipynb', {'preset': 'tiny', 'model': 'popularity', 'registered_model': 'sm-stop'},
                          keep_root=True, run_root=aws_tmp(aws)/'local-runs')
    name = 'recsys-train-20261122040000'
    _upload_job_outputs(aws, name, local.root)
    sm = FakeSageMaker([('InProgress', 'Training'), ('Stopped', 'MaxRuntimeExceeded')])
    res = attach_job(SubmittedJob(name, 'training', 'sagemaker', 'train.ipynb'), 'sagemaker', clients=_fake(aws, sm), poll_s=0)
    assert res.status == 'stopped' and 'ran past its max runtime of 3600 s' in res.reason
    assert 'version' not in res.tracked and not (res.run_dir/'model').exists()
    assert json.loads((res.run_dir/'manifest.json').read_text())['status'] == 'stopped'


def test_wait_stops_a_job_past_the_timeout_and_on_ctrl_c(aws):
    job = SubmittedJob('recsys-train-1', 'training', 'sagemaker', 'train.ipynb')
    sm = FakeSageMaker([('InProgress', 'Pending')])
    clock = iter(range(0, 10**6, 100))
    import time as _time
    orig = _time.monotonic
    try:
        _time.monotonic = lambda: next(clock)
        desc = wait_for_job(job, _fake(aws, sm), poll_s=0, timeout_s=250, logs=False, sleep=lambda s: None)
    finally: _time.monotonic = orig
    assert sm.stops == ['recsys-train-1'] and desc['TrainingJobStatus'] == 'Stopped'
    sm = FakeSageMaker([('InProgress', 'Training')])
    def interrupt(_): raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt): wait_for_job(job, _fake(aws, sm), poll_s=1, logs=False, sleep=interrupt)
    assert sm.stops == ['recsys-train-1']
