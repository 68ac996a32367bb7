"""SageMaker faults, injected for real into the cloud path (moto's in-process AWS, and a fake SageMaker client for
the job states moto cannot produce): bad input refused before anything is staged, a job that failed, one stopped past
its max runtime, a wait past its timeout or cut by Ctrl-C, throttling answered by bounded retries, and an S3 upload
failing half-way through staging. Nothing sends traffic beyond the process."""
import json, subprocess
from pathlib import Path

import pytest
from botocore.awsrequest import AWSResponse

from recsys_lib import registry, tracking
from recsys_lib.settings import load_settings
from recsys_lib.params import new_notebook
from recsys_lib.sagemaker import cloud
from recsys_lib.sagemaker.cloud import AwsClients, AwsError, SubmittedJob, attach_job, aws_errors, submit_job, wait_for_job
from recsys_lib.sagemaker.local import run_local_job
from recsys_lib.cli import report_job

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
    with pytest.raises(Exception, match="parameter 'k' \\(int\\) got 'ten'"): submit_job(nb, load_settings('sagemaker'), {'k': 'ten'}, clients=aws, wheel=wheel)
    with pytest.raises(Exception, match="channel 'data': .* does not exist"):
        submit_job(nb, load_settings('sagemaker'), channels={'data': tmp_path/'missing.parquet'}, clients=aws, wheel=wheel)
    with pytest.raises(Exception, match="channel name 'code'"): submit_job(nb, load_settings('sagemaker'), channels={'code': nb}, clients=aws, wheel=wheel)
    with pytest.raises(Exception, match="SageMaker allows 2500"): submit_job(nb, load_settings('sagemaker'), {'registered_model': 'x' * 3000}, clients=aws, wheel=wheel)
    secret_nb = new_notebook(tmp_path/'s.ipynb', "from recsys_lib.params import Secret\ntoken: Secret = None  # API token", 'x = 1')
    with pytest.raises(Exception, match="secret parameter\\(s\\) token cannot travel"):
        submit_job(secret_nb, load_settings('sagemaker'), {'token': 'hunter2'}, clients=aws, wheel=wheel)
    monkeypatch.setenv('RECSYS_SAGEMAKER_USE_SPOT', 'yes')
    with pytest.raises(Exception, match="use_spot = yes needs checkpoint_s3_uri"): submit_job(nb, load_settings('sagemaker'), clients=aws, wheel=wheel)
    assert _keys(aws) == [] and aws.sagemaker.list_training_jobs()['TrainingJobSummaries'] == []



def test_path_parameter_naming_no_usable_data_is_refused_before_anything_is_staged(aws, wheel, tmp_path, monkeypatch):
    "A path parameter is staged as a channel, so one that names nothing the job could get is refused on this machine."
    from recsys_lib.params import ParamError
    from recsys_lib.sagemaker.schedule import schedule_job
    nb = ROOT/'pipelines'/'train.ipynb'
    monkeypatch.chdir(tmp_path)
    (tmp_path/'ratings.csv').write_text('user_id,item_id\n1,2\n')
    with pytest.raises(ParamError, match=f"parameter 'data_path': missing.csv does not exist on this machine \\({tmp_path/'missing.csv'}\\)"):
        submit_job(nb, load_settings('sagemaker'), {'data_path': 'missing.csv'}, clients=aws, wheel=wheel)
    with pytest.raises(ParamError, match="which --channel data_path already gives"):
        submit_job(nb, load_settings('sagemaker'), {'data_path': 'ratings.csv'}, channels={'data_path': f's3://{BUCKET}/other.csv'}, clients=aws, wheel=wheel)
    with pytest.raises(ParamError, match="'gs://b/x.csv'; a job reads a local file or folder"):
        submit_job(nb, load_settings('sagemaker'), {'data_path': 'gs://b/x.csv'}, clients=aws, wheel=wheel)
    # a schedule's job starts later, in SageMaker: even an existing local file is refused, with the S3 form to use
    with pytest.raises(ParamError, match=f"--channel data_path s3://{BUCKET}/recsys/data/ratings.csv -p data_path"):
        schedule_job(nb, '0 3 * * *', load_settings('sagemaker'), {'data_path': 'ratings.csv'}, clients=aws, wheel=wheel)
    assert _keys(aws) == [] and aws.sagemaker.list_training_jobs()['TrainingJobSummaries'] == []
    assert aws.sagemaker.list_pipelines()['PipelineSummaries'] == [] and aws.scheduler.list_schedules()['Schedules'] == []
    # sagemaker-local has no AWS: an S3 value is refused before a container root is made
    tmpdir = tmp_path/'tmp'; tmpdir.mkdir()
    monkeypatch.setattr(__import__('tempfile'), 'tempdir', str(tmpdir))
    with pytest.raises(ParamError, match="sagemaker-local runs on this machine without AWS"):
        run_local_job(nb, load_settings('sagemaker-local'), {'data_path': f's3://{BUCKET}/ratings.csv'})
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
        submit_job(ROOT/'pipelines'/'train.ipynb', load_settings('sagemaker'), {'preset': 'tiny'}, clients=aws, wheel=wheel)
    assert len(puts) == 2
    assert aws.sagemaker.list_training_jobs()['TrainingJobSummaries'] == []


def test_failed_job_reports_its_reason_and_registers_nothing(aws, tmp_path, capsys):
    bad = new_notebook(tmp_path/'bad.ipynb', "registered_model: str = 'sm-bad'  # entry", 'x = 1', '1 / 0')
    local = run_local_job(bad, load_settings('sagemaker-local'), keep_root=True, run_root=tmp_path/'local-runs')
    assert local.status == 'failed'
    name = 'recsys-bad-20261122030000'
    _upload_job_outputs(aws, name, local.root)
    reason = (local.root/'output'/'failure').read_text().strip()
    sm = FakeSageMaker([('InProgress', 'Training'), ('Failed', 'Failed')], FailureReason=f'AlgorithmError: {reason}')
    job = SubmittedJob(name, 'training', 'sagemaker', 'bad.ipynb')
    res = attach_job(job, load_settings('sagemaker'), clients=_fake(aws, sm), poll_s=0)
    assert (res.status, res.reason) == ('failed', f'AlgorithmError: {reason}')
    assert res.notebook.is_file() and 'ZeroDivisionError' in res.notebook.read_text()   # the executed notebook came back
    assert 'version' not in res.tracked
    assert report_job(res) == 1 and 'ZeroDivisionError' in capsys.readouterr().err
    with pytest.raises(tracking.TrackingError, match=r"version 1 of 'sm-bad' does not exist in the registry .*; its versions: none"):
        registry.load_registered_model('sm-bad', version=1, profile='sagemaker')


def test_job_past_its_max_runtime_is_stopped_not_successful(aws):
    "SageMaker stops a job at MaxRuntimeInSeconds; even if the notebook's records say it finished, it is not a success."
    local = run_local_job(ROOT/'pipelines'/'train.ipynb', load_settings('sagemaker-local'), {'preset': 'tiny', 'model': 'popularity', 'registered_model': 'sm-stop'},
                          keep_root=True, run_root=aws_tmp(aws)/'local-runs')
    name = 'recsys-train-20261122040000'
    _upload_job_outputs(aws, name, local.root)
    sm = FakeSageMaker([('InProgress', 'Training'), ('Stopped', 'MaxRuntimeExceeded')])
    res = attach_job(SubmittedJob(name, 'training', 'sagemaker', 'train.ipynb'), load_settings('sagemaker'), clients=_fake(aws, sm), poll_s=0)
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


def _stub_iam(aws, monkeypatch, denied=(), trusted=('sagemaker.amazonaws.com',)):
    """The SDK's role check, answered by a stubbed IAM client: SimulatePrincipalPolicy denies `denied` and allows the
    rest of what it asks; GetRole returns a trust policy for `trusted`. Every other client is moto's."""
    from botocore.stub import Stubber
    monkeypatch.delenv('SAGEMAKER_VALIDATE_ROLE', raising=False)
    iam = aws.session.client('iam')
    stub = Stubber(iam)
    def simulate(params, **kw):   # answer exactly the actions asked, whichever the SDK's version asks
        stub.add_response('simulate_principal_policy', {'IsTruncated': False, 'EvaluationResults': [
            {'EvalActionName': a, 'EvalDecision': 'implicitDeny' if a in denied else 'allowed'} for a in params['ActionNames']]})
    def get_role(params, **kw):
        stub.add_response('get_role', {'Role': {
            'Path': '/', 'RoleName': 'recsys-sagemaker-execution', 'RoleId': 'AROAEXAMPLEEXAMPLE01', 'CreateDate': '2026-01-01T00:00:00Z',
            'Arn': 'arn:aws:iam::111122223333:role/recsys-sagemaker-execution',
            'AssumeRolePolicyDocument': json.dumps({'Version': '2012-10-17', 'Statement': [
                {'Effect': 'Allow', 'Principal': {'Service': list(trusted)}, 'Action': 'sts:AssumeRole'}]})}})
    iam.meta.events.register_first('provide-client-params.iam.SimulatePrincipalPolicy', simulate)
    iam.meta.events.register_first('provide-client-params.iam.GetRole', get_role)
    stub.activate()
    client = aws.session.client
    monkeypatch.setattr(aws.session, 'client', lambda name, *a, **kw: iam if name == 'iam' else client(name, *a, **kw))
    return stub


def test_execution_role_missing_what_the_sdk_checks_is_one_line_naming_the_actions(aws, wheel, monkeypatch):
    "The SDK simulates a fixed list of actions for the role (ec2 ones among them, even without a VPC): a denied one is named."
    from recsys_lib.sagemaker.schedule import schedule_job
    nb = ROOT/'pipelines'/'train.ipynb'
    _stub_iam(aws, monkeypatch, denied=('ec2:CreateNetworkInterface', 'ec2:DescribeVpcs'))
    with pytest.raises(AwsError) as e: submit_job(nb, load_settings('sagemaker'), {'preset': 'tiny'}, clients=aws, wheel=wheel)
    msg = str(e.value)
    assert '\n' not in msg and 'arn:aws:iam::111122223333:role/recsys-sagemaker-execution' in msg
    assert 'ec2:CreateNetworkInterface, ec2:DescribeVpcs' in msg and 'README' in msg and 'IAM' in msg, msg
    with pytest.raises(AwsError, match="ec2:CreateNetworkInterface, ec2:DescribeVpcs"):
        schedule_job(nb, '0 3 * * *', load_settings('sagemaker'), {'preset': 'tiny'}, clients=aws, wheel=wheel)
    assert aws.sagemaker.list_training_jobs()['TrainingJobSummaries'] == []
    assert aws.sagemaker.list_pipelines()['PipelineSummaries'] == [] and aws.scheduler.list_schedules()['Schedules'] == []


def test_execution_role_sagemaker_cannot_assume_is_one_line(aws, wheel, monkeypatch):
    _stub_iam(aws, monkeypatch, trusted=('ec2.amazonaws.com',))
    with pytest.raises(AwsError, match="the trust policy of execution role .* does not let sagemaker.amazonaws.com assume it"):
        submit_job(ROOT/'pipelines'/'train.ipynb', load_settings('sagemaker'), {'preset': 'tiny'}, clients=aws, wheel=wheel)


def test_execution_role_with_what_the_sdk_checks_passes_its_check(aws, wheel, monkeypatch):
    "The same check, switched on, lets a complete role through: the job is created."
    stub = _stub_iam(aws, monkeypatch)
    job = submit_job(ROOT/'pipelines'/'train.ipynb', load_settings('sagemaker'), {'preset': 'tiny'}, clients=aws, wheel=wheel)
    assert aws.sagemaker.describe_training_job(TrainingJobName=job.name)['TrainingJobStatus']
    stub.assert_no_pending_responses()


def _sdk_environment_file(tmp_path, hps:dict, channels:list)->Path:
    "The environment file the SDK's own container driver writes for these hyperparameters and channels."
    import importlib.util, sys
    from sagemaker.train.container_drivers.scripts import environment as env_script
    path = tmp_path/'sm_training.env'
    resource = {'current_host': 'algo-1', 'current_instance_type': 'ml.m5.xlarge', 'hosts': ['algo-1'], 'network_interface_name': 'eth0'}
    import os
    os.environ.setdefault('TRAINING_JOB_NAME', 'recsys-test')
    env_script.set_env(resource, {c: {'TrainingInputMode': 'File'} for c in channels}, hps, output_file=str(path))
    return path


def _source(path:Path)->subprocess.CompletedProcess:
    "Source `path` the way the SDK's sm_train.sh does: under `set -e`."
    return subprocess.run(['bash', '-c', f'set -e; source {path}; echo "$SM_HPS"'], capture_output=True, text=True)


def test_names_and_values_the_sdk_environment_file_cannot_hold_are_refused_before_staging(aws, wheel, tmp_path):
    """The SDK writes `export SM_CHANNEL_<NAME>='...'` and `SM_HP_<NAME>='...'` lines that sm_train.sh sources under
    `set -e`: a '-' or '.' in a channel name, or a "'" in a value, kills the job before the entrypoint runs."""
    # what the platform would do with them: the SDK's writer, then bash
    assert _source(_sdk_environment_file(tmp_path, {'preset': "it's"}, ['data'])).returncode != 0
    assert _source(_sdk_environment_file(tmp_path, {'preset': 'tiny'}, ['my-data'])).returncode != 0
    nb = ROOT/'pipelines'/'train.ipynb'
    data = tmp_path/'ratings.csv'; data.write_text('user_id,item_id\n1,2\n')
    for name in ('my-data', 'my.data'):
        with pytest.raises(Exception, match=f"channel name '{name}'.*letters, digits and '_'"):
            submit_job(nb, load_settings('sagemaker'), channels={name: data}, clients=aws, wheel=wheel)
    with pytest.raises(Exception, match="channel names 'Data' and 'data' are the same .*SM_CHANNEL_DATA"):
        submit_job(nb, load_settings('sagemaker'), channels={'data': data, 'Data': data}, clients=aws, wheel=wheel)
    with pytest.raises(Exception, match="hyperparameter 'registered_model' contains a single quote"):
        submit_job(nb, load_settings('sagemaker'), {'registered_model': "it's"}, clients=aws, wheel=wheel)
    assert _keys(aws) == [] and aws.sagemaker.list_training_jobs()['TrainingJobSummaries'] == []


def test_values_the_sdk_environment_file_holds_reach_the_job_unchanged(tmp_path):
    "What is accepted survives the SDK's writer and bash: quotes, dollars, backslashes, newlines."
    from recsys_lib.sagemaker.jobcode import check_environment_file
    hps = {'recsys_notebook': 'train.ipynb', 'note': 'say "hi" to $HOME \\ and\nnext line', 'model_params': '{"l2": 300}'}
    check_environment_file(hps, ['data', 'data_path', 'Items2'], 'training')
    r = _source(_sdk_environment_file(tmp_path, hps, ['data', 'data_path', 'Items2']))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)['note'] == hps['note']


def test_damaged_store_is_refused_before_anything_is_uploaded(aws, wheel, monkeypatch, capsys):
    "A truncated mlflow.db used to be found only after the paid job ran; it is refused before staging: nothing uploaded, no job."
    from recsys_lib.cli import main
    nb = ROOT/'pipelines'/'train.ipynb'
    job = submit_job(nb, load_settings('sagemaker'), {'preset': 'tiny'}, clients=aws, wheel=wheel)   # submitted while the store was fine
    uploaded = _keys(aws)
    (aws_tmp(aws)/'mlflow.db').write_text('this is not a database\n' * 100)
    with pytest.raises(tracking.TrackingError, match="mlflow.db is not a usable SQLite database"):
        cloud.run_sagemaker_job(nb, load_settings('sagemaker'), {'preset': 'tiny'}, clients=aws, wheel=wheel, wait=False)
    monkeypatch.setenv('RECSYS_WHEEL', str(wheel))
    assert main(['run', str(nb), '--profile', 'sagemaker', '-p', 'preset', 'tiny', '--no-wait']) == 2
    assert "mlflow.db is not a usable SQLite database" in capsys.readouterr().err
    assert _keys(aws) == uploaded and [j['TrainingJobName'] for j in aws.sagemaker.list_training_jobs()['TrainingJobSummaries']] == [job.name]
    # attaching would collect the job and then fail to log it: refused first, so attaching again after the fix makes one run folder
    assert main(['attach', job.name, '--profile', 'sagemaker', '--no-logs']) == 2
    assert "mlflow.db is not a usable SQLite database" in capsys.readouterr().err
    assert not (aws_tmp(aws)/'runs').exists() or not any((aws_tmp(aws)/'runs').iterdir())


def test_store_damaged_during_the_job_keeps_it_succeeded_and_says_how_to_register(aws, capsys):
    "The job ran and was paid for: a store that fails only when the run is logged is recorded beside the run, which stays succeeded; exit 1."
    nb = new_notebook(aws_tmp(aws)/'fine.ipynb', 'x: int = 1  # a value', 'y = x + 1')
    local = run_local_job(nb, load_settings('sagemaker-local'), keep_root=True, run_root=aws_tmp(aws)/'local-runs')
    assert local.ok, local.reason
    name = 'recsys-fine-20261122050000'
    _upload_job_outputs(aws, name, local.root)
    db = aws_tmp(aws)/'mlflow.db'
    class DamagesStoreWhenDone(FakeSageMaker):   # the store breaks while the job runs (a disk filled, a bad restore)
        def _next(self, kind):
            d = super()._next(kind)
            if d[f'{kind}JobStatus'] == 'Completed': db.write_text('not a database\n' * 100)
            return d
    sm = DamagesStoreWhenDone([('InProgress', 'Training'), ('Completed', 'Completed')])
    res = attach_job(SubmittedJob(name, 'training', 'sagemaker', 'fine.ipynb'), load_settings('sagemaker'), clients=_fake(aws, sm), poll_s=0)
    assert (res.status, res.tracked) == ('succeeded', {}) and 'mlflow.db' in res.tracking_error
    manifest = json.loads((res.run_dir/'manifest.json').read_text())
    assert manifest['status'] == 'succeeded' and manifest['tracking_error'] == res.tracking_error
    capsys.readouterr()   # the wait's status lines
    assert report_job(res, 'attach') == 1
    line, = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"recsys attach: job {name} succeeded, but logging it to MLflow failed: "), line
    assert f"register_run('{res.run_dir}', 'sagemaker')" in line
