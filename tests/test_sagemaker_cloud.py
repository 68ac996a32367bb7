"""The SageMaker cloud path without AWS: request shapes and S3 staging against moto's in-process mock, and the job
states moto cannot produce (failed, stopped, past its runtime, interrupted) against a small fake client injected
into the backend. The job outputs the fakes report are real: produced by the container entrypoint through the
`sagemaker-local` profile and put in the mocked bucket where SageMaker would upload them.

Nothing here sends traffic: moto intercepts every boto3 call in-process.
"""
import json, os, subprocess, time

import moto
import pytest

from recsys_lib import registry
from recsys_lib.sagemaker import cloud, jobcode
from recsys_lib.sagemaker.cloud import AwsClients, SubmittedJob, attach_job, submit_job
from recsys_lib.sagemaker.local import run_local_job
from recsys_lib.settings import load_settings

from conftest import BIN, ROOT, one_line_error, sagemaker_profiles_env

BUCKET, REGION = 'recsys-test-bucket', 'eu-west-1'


@pytest.fixture
def aws(tmp_path, monkeypatch):
    "moto's AWS with an empty bucket; the sagemaker and sagemaker-local profiles' stores under tmp_path."
    sagemaker_profiles_env(tmp_path, monkeypatch, BUCKET, REGION)
    with moto.mock_aws():
        clients = cloud._mock_clients(REGION)
        clients.s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={'LocationConstraint': REGION})
        yield clients


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    return jobcode.build_wheel(tmp_path_factory.mktemp('dist'))


def _capture(aws, operation):
    "The requests of `operation` as boto3 sends them (moto's Describe answers drop some fields)."
    sent = []
    for events in (aws.session.events, aws.sagemaker.meta.events):
        events.register(f'provide-client-params.sagemaker.{operation}', lambda params, **kw: sent.append(params))
    return sent


def _keys(clients, prefix=''):
    return [o['Key'] for o in clients.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get('Contents', [])]


def test_training_job_request_and_staging(aws, wheel, tmp_path, monkeypatch):
    monkeypatch.setenv('RECSYS_SAGEMAKER_USE_SPOT', 'yes')
    monkeypatch.setenv('RECSYS_SAGEMAKER_CHECKPOINT_S3_URI', f's3://{BUCKET}/recsys/checkpoints')
    monkeypatch.setenv('RECSYS_SAGEMAKER_SUBNETS', 'subnet-1,subnet-2')
    monkeypatch.setenv('RECSYS_SAGEMAKER_SECURITY_GROUPS', 'sg-1')
    monkeypatch.setenv('RECSYS_SAGEMAKER_INSTANCE_COUNT', '2')
    sent = _capture(aws, 'CreateTrainingJob')
    data = tmp_path/'interactions.csv'
    data.write_text('user_id,item_id,timestamp\n1,2,3\n')
    job = submit_job(ROOT/'pipelines'/'train.ipynb', load_settings('sagemaker'),
                     {'data_path': '$SM_CHANNEL_DATA/interactions.csv', 'model': 'sasrec', 'model_params': {'epochs': 2}, 'k': 20},
                     channels={'data': data, 'extra': f's3://{BUCKET}/shared/items/'}, clients=aws, wheel=wheel)
    req = aws.sagemaker.describe_training_job(TrainingJobName=job.name)
    assert job.kind == 'training' and job.name.startswith('recsys-train-')
    assert req['AlgorithmSpecification']['TrainingImage'] == '763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-training:2.5-gpu-py311'
    assert req['RoleArn'] == 'arn:aws:iam::111122223333:role/recsys-sagemaker-execution'
    assert req['ResourceConfig'] == {'InstanceType': 'ml.g5.xlarge', 'InstanceCount': 2, 'VolumeSizeInGB': 50}
    assert req['HyperParameters'] == {'recsys_notebook': 'train.ipynb', 'recsys_registry_profile': 'sagemaker', 'data_path': '$SM_CHANNEL_DATA/interactions.csv',
                                      'model': 'sasrec', 'model_params': '{"epochs": 2}', 'k': '20'}
    assert req['OutputDataConfig']['S3OutputPath'] == f's3://{BUCKET}/recsys/jobs'
    assert req['StoppingCondition'] == {'MaxRuntimeInSeconds': 86400, 'MaxWaitTimeInSeconds': 172800}
    assert req['EnableManagedSpotTraining'] is True
    assert req['CheckpointConfig'] == {'S3Uri': f's3://{BUCKET}/recsys/checkpoints', 'LocalPath': '/opt/ml/checkpoints'}
    assert req['VpcConfig'] == {'SecurityGroupIds': ['sg-1'], 'Subnets': ['subnet-1', 'subnet-2']}
    assert sent[0]['Environment'] == {'RECSYS_CHECKPOINT_DIR': '/opt/ml/checkpoints'}
    assert sent[0]['AlgorithmSpecification']['ContainerEntrypoint'] == ['/bin/bash']
    channels = {c['ChannelName']: c['DataSource']['S3DataSource']['S3Uri'] for c in req['InputDataConfig']}
    assert set(channels) == {'data', 'extra', 'code', 'sm_drivers'} and channels['extra'] == f's3://{BUCKET}/shared/items/'
    tags = aws.sagemaker.list_tags(ResourceArn=req['TrainingJobArn'])['Tags']
    assert {'Key': 'project', 'Value': 'recsys_lib'} in tags
    # what the container will find: the notebook, the settings, the wheel, the uploaded data
    code = channels['code'][len(f's3://{BUCKET}/'):]
    assert {k.rsplit('/', 1)[1] for k in _keys(aws, code)} == {'train.ipynb', 'settings.ini', wheel.name, 'constraints.txt', 'job.sh'}
    assert _keys(aws, channels['data'][len(f's3://{BUCKET}/'):])[0].endswith('interactions.csv')
    # the command runs job.sh, which installs this very wheel under the staged constraints and runs the entrypoint
    get = lambda key: aws.s3.get_object(Bucket=BUCKET, Key=key)['Body'].read()
    assert json.loads(get(_keys(aws, channels['sm_drivers'][len(f's3://{BUCKET}/'):] + '/sourcecode.json')[0]))['command'] == 'bash job.sh training'
    job_sh = get(next(k for k in _keys(aws, code) if k.endswith('/job.sh'))).decode()
    assert f"-c constraints.txt './{wheel.name}[{','.join(jobcode.JOB_EXTRAS)}]'" in job_sh
    pins = dict(l.split('==') for l in get(next(k for k in _keys(aws, code) if k.endswith('/constraints.txt'))).decode().splitlines() if '==' in l)
    from importlib import metadata
    assert pins['mlflow'] == metadata.version('mlflow') and pins['papermill'] == metadata.version('papermill') and 'torch' not in pins


def test_processing_job_request_for_batch_inference(aws, wheel, tmp_path):
    from recsys_lib.models import Popularity
    from recsys_lib.data import Interactions
    from recsys_lib.synthetic import make_synthetic, SYNTHETIC_PRESETS
    sent = _capture(aws, 'CreateProcessingJob')
    model_dir = tmp_path/'model'
    Popularity().fit(Interactions.from_df(make_synthetic(**SYNTHETIC_PRESETS['tiny']))).save(model_dir)
    job = submit_job(ROOT/'pipelines'/'batch_inference.ipynb', load_settings('sagemaker'), {'model_path': '$SM_CHANNEL_MODEL', 'k': 5},
                     channels={'model': model_dir}, clients=aws, wheel=wheel)
    req = aws.sagemaker.describe_processing_job(ProcessingJobName=job.name)
    assert job.kind == 'processing' and job.name.startswith('recsys-batch-inference-')
    assert len(sent) == 1 and sent[0]['ProcessingResources']['ClusterConfig'] == {
        'InstanceCount': 1, 'InstanceType': 'ml.g5.xlarge', 'VolumeSizeInGB': 50}
    assert {'Key': 'project', 'Value': 'recsys_lib'} in sent[0]['Tags'] and sent[0]['RoleArn'] == req['RoleArn']
    assert req['AppSpecification']['ContainerEntrypoint'] == ['bash', '/opt/ml/processing/input/code/job.sh', 'processing']
    inputs = {i['InputName']: i['S3Input'] for i in req['ProcessingInputs']}
    assert {n: i['LocalPath'] for n, i in inputs.items()} == {n: f'/opt/ml/processing/input/{n}' for n in ('code', 'config', 'model')}
    outputs = {o['OutputName']: o['S3Output']['S3Uri'] for o in req['ProcessingOutputConfig']['Outputs']}
    assert outputs == {n: f's3://{BUCKET}/recsys/jobs/{job.name}/output/{n}' for n in ('data', 'model')}
    # the hyperparameters travel as a file in the config input, every value a string
    config = inputs['config']['S3Uri'][len(f's3://{BUCKET}/'):]
    hps = json.loads(aws.s3.get_object(Bucket=BUCKET, Key=[k for k in _keys(aws, config) if k.endswith('hyperparameters.json')][0])['Body'].read())
    assert hps == {'recsys_notebook': 'batch_inference.ipynb', 'recsys_registry_profile': 'sagemaker', 'model_path': '$SM_CHANNEL_MODEL', 'k': '5'}
    assert any(k.endswith('manifest.json') for k in _keys(aws, inputs['model']['S3Uri'][len(f's3://{BUCKET}/'):]))


def test_cli_submits_with_no_wait(aws, wheel, monkeypatch, capsys):
    from recsys_lib.cli import main
    monkeypatch.setenv('RECSYS_WHEEL', str(wheel))
    assert main(['run', str(ROOT/'pipelines'/'train.ipynb'), '--profile', 'sagemaker', '-p', 'preset', 'tiny', '--no-wait']) == 0
    out = capsys.readouterr()
    name = aws.sagemaker.list_training_jobs()['TrainingJobSummaries'][0]['TrainingJobName']
    assert f"recsys attach {name} --profile sagemaker" in out.out and 'console.aws.amazon.com' in out.err



def test_recsys_run_uploads_a_local_data_path_as_a_channel(aws, wheel, tmp_path, monkeypatch, capsys):
    "The command a user types, from the data's folder: the file becomes channel data_path, the parameter the path in it."
    from recsys_lib.cli import main
    monkeypatch.setenv('RECSYS_WHEEL', str(wheel))
    monkeypatch.chdir(tmp_path)
    (tmp_path/'ratings.csv').write_text('user_id,item_id,timestamp\n1,2,3\n')
    assert main(['run', str(ROOT/'pipelines'/'train.ipynb'), '--profile', 'sagemaker', '-p', 'data_path', 'ratings.csv', '--no-wait']) == 0
    name = aws.sagemaker.list_training_jobs()['TrainingJobSummaries'][0]['TrainingJobName']
    req = aws.sagemaker.describe_training_job(TrainingJobName=name)   # the CLI made its own clients: read what moto received
    assert req['HyperParameters'] == {'recsys_notebook': 'train.ipynb', 'recsys_registry_profile': 'sagemaker', 'data_path': '$SM_CHANNEL_DATA_PATH/ratings.csv'}
    channels = {c['ChannelName']: c['DataSource']['S3DataSource']['S3Uri'] for c in req['InputDataConfig']}
    assert set(channels) == {'data_path', 'code', 'sm_drivers'}
    key = channels['data_path'][len(f's3://{BUCKET}/'):]
    assert key.startswith('recsys/') and key.endswith('/data_path/ratings.csv'), key   # lands as /opt/ml/input/data/data_path/ratings.csv
    assert aws.s3.get_object(Bucket=BUCKET, Key=key)['Body'].read() == (tmp_path/'ratings.csv').read_bytes()
    # an S3 value is a channel too, read in place; a container path is passed as it is
    sent = _capture(aws, 'CreateTrainingJob')
    submit_job(ROOT/'pipelines'/'train.ipynb', load_settings('sagemaker'), {'data_path': f's3://{BUCKET}/exports/2026-12/ratings.csv'}, clients=aws, wheel=wheel)
    channels = {c['ChannelName']: c['DataSource']['S3DataSource']['S3Uri'] for c in sent[0]['InputDataConfig']}
    assert channels['data_path'] == f's3://{BUCKET}/exports/2026-12/ratings.csv'
    assert sent[0]['HyperParameters']['data_path'] == '$SM_CHANNEL_DATA_PATH/ratings.csv'
    sent.clear()
    submit_job(ROOT/'pipelines'/'train.ipynb', load_settings('sagemaker'), {'data_path': '/opt/ml/input/data/data/ratings.csv'}, channels={'data': tmp_path/'ratings.csv'},
               clients=aws, wheel=wheel)
    assert sent[0]['HyperParameters']['data_path'] == '/opt/ml/input/data/data/ratings.csv'
    assert {c['ChannelName'] for c in sent[0]['InputDataConfig']} == {'data', 'code', 'sm_drivers'}


def test_processing_job_gets_path_parameters_as_inputs(aws, wheel, tmp_path):
    "Batch inference with a user list and a model folder on this machine: both become processing inputs."
    from recsys_lib.models import Popularity
    from recsys_lib.data import Interactions
    from recsys_lib.synthetic import make_synthetic, SYNTHETIC_PRESETS
    Popularity().fit(Interactions.from_df(make_synthetic(**SYNTHETIC_PRESETS['tiny']))).save(tmp_path/'model')
    (tmp_path/'users.csv').write_text('user_id\n1\n2\n')
    job = submit_job(ROOT/'pipelines'/'batch_inference.ipynb', load_settings('sagemaker'), {'users_path': tmp_path/'users.csv', 'model_path': str(tmp_path/'model')},
                     clients=aws, wheel=wheel)
    req = aws.sagemaker.describe_processing_job(ProcessingJobName=job.name)
    inputs = {i['InputName']: i['S3Input'] for i in req['ProcessingInputs']}
    assert {n: i['LocalPath'] for n, i in inputs.items()} == {n: f'/opt/ml/processing/input/{n}' for n in ('code', 'config', 'users_path', 'model_path')}
    users = _keys(aws, inputs['users_path']['S3Uri'][len(f's3://{BUCKET}/'):])
    assert len(users) == 1 and users[0].endswith('/users.csv')
    assert any(k.endswith('/manifest.json') for k in _keys(aws, inputs['model_path']['S3Uri'][len(f's3://{BUCKET}/'):]))
    config = inputs['config']['S3Uri'][len(f's3://{BUCKET}/'):]
    hps = json.loads(aws.s3.get_object(Bucket=BUCKET, Key=[k for k in _keys(aws, config) if k.endswith('hyperparameters.json')][0])['Body'].read())
    assert hps == {'recsys_notebook': 'batch_inference.ipynb', 'recsys_registry_profile': 'sagemaker', 'users_path': '$SM_CHANNEL_USERS_PATH/users.csv', 'model_path': '$SM_CHANNEL_MODEL_PATH'}

class FakeSageMaker:
    "Scripted Describe*Job answers for the states moto cannot produce; records stop requests."
    def __init__(self, states, **final):
        self.states, self.final, self.stops, self.polls = list(states), final, [], 0
    def _next(self, kind):
        self.polls += 1
        status, secondary = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        if self.stops and status == 'InProgress': status, secondary = 'Stopping', 'Stopping'
        d = {f'{kind}JobStatus': status, 'SecondaryStatus': secondary,
             'OutputDataConfig': {'S3OutputPath': f's3://{BUCKET}/recsys/jobs'}, 'StoppingCondition': {'MaxRuntimeInSeconds': 3600}}
        return {**d, **(self.final if status in cloud.TERMINAL else {})}
    def describe_training_job(self, TrainingJobName): return self._next('Training')
    def describe_processing_job(self, ProcessingJobName): return self._next('Processing')
    def stop_training_job(self, TrainingJobName):
        self.stops.append(TrainingJobName); self.states = [('Stopped', 'Stopped')]
    stop_processing_job = stop_training_job


class NoLogs:
    def describe_log_streams(self, **kw): return {'logStreams': []}


def _fake(aws, sm):
    return AwsClients(aws.session, sm, aws.s3, NoLogs())


def _upload_job_outputs(aws, job_name, root):
    "Put a sagemaker-local job's archives where SageMaker uploads a training job's outputs."
    for name in ('output.tar.gz', 'model.tar.gz'):
        aws.s3.upload_file(str(root/name), BUCKET, f'recsys/jobs/{job_name}/output/{name}')


def test_completed_job_is_collected_logged_and_registered(aws):
    "A completed training job's archives, downloaded from S3, become a run folder and a registered version."
    local = run_local_job(ROOT/'pipelines'/'train.ipynb', load_settings('sagemaker-local'), {'preset': 'tiny', 'model': 'popularity', 'registered_model': 'sm-cloud'},
                          keep_root=True, run_root=aws_tmp(aws)/'local-runs')
    assert local.ok, local.reason
    name = 'recsys-train-20261122030000'
    _upload_job_outputs(aws, name, local.root)
    sm = FakeSageMaker([('InProgress', 'Starting'), ('InProgress', 'Training'), ('Completed', 'Completed')],
                       ModelArtifacts={'S3ModelArtifacts': f's3://{BUCKET}/recsys/jobs/{name}/output/model.tar.gz'})
    res = attach_job(name, load_settings('sagemaker'), 'training', clients=_fake(aws, sm), poll_s=0)
    assert res.ok and res.metrics == local.metrics
    assert res.tracked['version'] == 1
    assert json.loads((res.run_dir/'manifest.json').read_text())['job']['backend'] == 'sagemaker'
    model = registry.load_registered_model('sm-cloud', version=1, profile='sagemaker')
    assert type(model).__name__ == 'Popularity'


def aws_tmp(aws):
    from pathlib import Path
    return Path(os.environ['RECSYS_SAGEMAKER_RUNS_DIR']).parent


def test_log_tail_streams_only_new_lines(aws):
    group, stream = '/aws/sagemaker/TrainingJobs', 'recsys-train-1/algo-1-1700000000'
    job = SubmittedJob('recsys-train-1', 'training', 'sagemaker', 'train.ipynb')
    tail = cloud.LogTail(job, aws)
    assert tail.poll() == []   # no log group yet: the instance is starting
    aws.logs.create_log_group(logGroupName=group)
    aws.logs.create_log_stream(logGroupName=group, logStreamName=stream)
    put = lambda *msgs: aws.logs.put_log_events(logGroupName=group, logStreamName=stream,
                                                logEvents=[{'timestamp': int(time.time() * 1000) + i, 'message': m} for i, m in enumerate(msgs)])
    put('installing recsys_lib', 'running train.ipynb')
    assert tail.poll() == ['[algo-1-1700000000] installing recsys_lib', '[algo-1-1700000000] running train.ipynb']
    put('recsys job succeeded')
    assert tail.poll() == ['[algo-1-1700000000] recsys job succeeded']


def test_recsys_schedule_dry_run_and_local_crontab(clean_env, tmp_path):
    "The commands a user types: a dry run prints the pipeline and the schedule request and sends nothing."
    import subprocess
    from conftest import BIN
    env = {**clean_env, 'SAGEMAKER_USER_CONFIG_OVERRIDE': str(tmp_path/'sm.yaml'), 'HOME': str(tmp_path), 'AWS_EC2_METADATA_DISABLED': 'true'}
    (tmp_path/'sm.yaml').write_text(cloud.TELEMETRY_OPT_OUT)
    nb = str(ROOT/'pipelines'/'train.ipynb')
    r = subprocess.run([str(BIN/'recsys'), 'schedule', nb, '--cron', '0 3 * * 1-5', '--profile', 'sagemaker', '--dry-run',
                        '-p', 'model', 'ease'], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    step = out['pipeline_definition']['Steps'][0]
    assert step['Type'] == 'Training' and step['Arguments']['HyperParameters'] == {'recsys_notebook': 'train.ipynb', 'recsys_registry_profile': 'sagemaker', 'model': 'ease'}
    req = out['create_schedule_request']
    assert req['ScheduleExpression'] == 'cron(0 3 ? * 2,3,4,5,6 *)'
    assert req['Target']['Arn'] == 'arn:aws:sagemaker:eu-west-1:111122223333:pipeline/recsys-train'
    assert req['Target']['RoleArn'] == 'arn:aws:iam::111122223333:role/recsys-eventbridge-scheduler'
    r = subprocess.run([str(BIN/'recsys'), 'schedule', nb, '--cron', '0 3 * * *', '-p', 'model', 'ease'],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith('0 3 * * * cd ') and "run " + nb in r.stdout and '-p model ease' in r.stdout
    r = subprocess.run([str(BIN/'recsys'), 'schedule', nb, '--cron', '0 3 * *', '--profile', 'sagemaker', '--dry-run'],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and 'expected 5' in r.stderr



def test_recsys_schedule_refuses_local_paths_and_takes_s3_ones(clean_env, tmp_path):
    "A schedule runs later: a local path is refused with the S3 form to use; an s3:// value becomes the step's channel."
    import subprocess
    from conftest import BIN
    env = {**clean_env, 'SAGEMAKER_USER_CONFIG_OVERRIDE': str(tmp_path/'sm.yaml'), 'HOME': str(tmp_path), 'AWS_EC2_METADATA_DISABLED': 'true'}
    (tmp_path/'sm.yaml').write_text(cloud.TELEMETRY_OPT_OUT)
    (tmp_path/'ratings.csv').write_text('user_id,item_id\n1,2\n')
    schedule = [str(BIN/'recsys'), 'schedule', str(ROOT/'pipelines'/'train.ipynb'), '--cron', '0 3 * * *']
    r = subprocess.run(schedule + ['--profile', 'sagemaker', '--dry-run', '-p', 'data_path', './ratings.csv'],
                       cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and r.stdout == '', r.stderr[-2000:]
    assert (f"parameter 'data_path' names {tmp_path/'ratings.csv'} on this machine; put it in S3 (aws s3 cp {tmp_path/'ratings.csv'} "
            "s3://recsys-example-bucket/recsys/data/ratings.csv) and pass --channel data_path s3://recsys-example-bucket/recsys/data/ratings.csv "
            "-p data_path '$SM_CHANNEL_DATA_PATH/ratings.csv'") in r.stderr
    r = subprocess.run(schedule + ['--profile', 'sagemaker', '--dry-run', '-p', 'data_path', 's3://recsys-example-bucket/exports/ratings.csv'],
                       cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    args = json.loads(r.stdout)['pipeline_definition']['Steps'][0]['Arguments']
    assert args['HyperParameters'] == {'recsys_notebook': 'train.ipynb', 'recsys_registry_profile': 'sagemaker', 'data_path': '$SM_CHANNEL_DATA_PATH/ratings.csv'}
    channels = {c['ChannelName']: c['DataSource']['S3DataSource']['S3Uri'] for c in args['InputDataConfig']}
    assert channels['data_path'] == 's3://recsys-example-bucket/exports/ratings.csv'
    # sagemaker-local schedules run on this machine: the crontab line, with the path made absolute (cron starts elsewhere)
    r = subprocess.run(schedule + ['--profile', 'sagemaker-local', '-p', 'data_path', './ratings.csv'],
                       cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"--profile sagemaker-local --no-progress -p data_path {tmp_path/'ratings.csv'}" in r.stdout

def test_missing_credentials_is_one_clear_line(clean_env, tmp_path, wheel):
    import subprocess
    from conftest import BIN
    env = {k: v for k, v in clean_env.items() if not k.startswith('AWS_')}
    env.update(HOME=str(tmp_path), AWS_EC2_METADATA_DISABLED='true', AWS_CONFIG_FILE=str(tmp_path/'none'),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path/'none'), SAGEMAKER_USER_CONFIG_OVERRIDE=str(tmp_path/'sm.yaml'))
    (tmp_path/'sm.yaml').write_text(cloud.TELEMETRY_OPT_OUT)
    r = subprocess.run([str(BIN/'recsys'), 'run', str(ROOT/'pipelines'/'train.ipynb'), '--profile', 'sagemaker', '-p', 'preset', 'tiny',
                        '--wheel', str(wheel)], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    assert 'recsys run: error: recsys run: no AWS credentials found' in r.stderr and 'Traceback' not in r.stderr


def test_scheduled_pipeline_request(aws, wheel):
    from recsys_lib.sagemaker.schedule import schedule_job
    sent = _capture(aws, 'CreatePipeline')
    out = schedule_job(ROOT/'pipelines'/'batch_inference.ipynb', '15 5 * * *', load_settings('sagemaker'), {'model_path': '$SM_CHANNEL_MODEL'},
                       channels={'model': f's3://{BUCKET}/models/ease/'}, clients=aws, wheel=wheel)
    assert out['created'] is True and sent[0]['PipelineName'] == 'recsys-batch-inference'
    assert sent[0]['RoleArn'] == 'arn:aws:iam::111122223333:role/recsys-sagemaker-execution'
    step = json.loads(sent[0]['PipelineDefinition'])['Steps'][0]
    assert step['Type'] == 'Processing'
    args = step['Arguments']
    assert args['ProcessingResources']['ClusterConfig']['InstanceType'] == 'ml.g5.xlarge'
    assert args['AppSpecification']['ImageUri'].endswith('pytorch-training:2.5-gpu-py311')
    assert {i['InputName'] for i in args['ProcessingInputs']} == {'code', 'config', 'model'}
    schedule = aws.scheduler.get_schedule(Name='recsys-batch-inference')
    assert schedule['ScheduleExpression'] == 'cron(15 5 * * ? *)'
    assert schedule['Target']['Arn'] == aws.sagemaker.describe_pipeline(PipelineName='recsys-batch-inference')['PipelineArn']


@pytest.mark.aws
def test_real_account_train_job():
    """Against a real account (never in the default run): `RECSYS_AWS_TEST_PROFILE=sagemaker pytest -m aws`.
    Submits the tiny train job on the profile's instance type, waits, and checks it completed and was registered."""
    from recsys_lib.sagemaker.cloud import run_sagemaker_job
    profile = os.environ.get('RECSYS_AWS_TEST_PROFILE')
    if not profile: pytest.skip("set RECSYS_AWS_TEST_PROFILE to a sagemaker profile of a real account")
    res = run_sagemaker_job(ROOT/'pipelines'/'train.ipynb', load_settings(profile),
                            {'preset': 'tiny', 'model': 'popularity', 'registered_model': 'recsys-aws-smoke'}, poll_s=30)
    assert res.ok, res.reason
    assert res.metrics['test_ndcg@10'] > 0 and res.tracked.get('version')


def _optional_modules()->dict:
    "Top-level import name -> the pyproject extras (not dev) whose requirements provide it."
    import re, tomllib
    from importlib.metadata import packages_distributions
    norm = lambda n: re.sub(r'[-_.]+', '-', n).lower()
    provides = {}
    for module, dists in packages_distributions().items():
        for d in dists: provides.setdefault(norm(d), set()).add(module)
    extras = tomllib.loads((ROOT/'pyproject.toml').read_text())['project']['optional-dependencies']
    out = {}
    for extra, reqs in extras.items():
        if extra == 'dev': continue
        for req in reqs:
            for module in provides.get(norm(re.match(r'[A-Za-z0-9._-]+', req).group()), ()): out.setdefault(module, set()).add(extra)
    return out


def _imports(tree, top_level:bool)->set:
    "Absolute module names imported by `tree`'s own statements (top_level) or anywhere in it (lazy imports in functions too)."
    import ast
    nodes = tree.body if top_level else ast.walk(tree)
    out = set()
    for n in nodes:
        if isinstance(n, ast.Import): out |= {a.name for a in n.names}
        elif isinstance(n, ast.ImportFrom) and n.level == 0: out.add(n.module)
    return out


def test_job_installs_the_extras_each_pipeline_notebook_imports():
    """The staged job installs the wheel with some extras; every module a pipeline notebook imports unconditionally
    must find the optional packages it uses (lazily too: the notebook calls those functions) among them.
    The spark extra is left out: its imports sit behind engine == 'spark', which needs Java the job image lacks."""
    import ast, re
    from pathlib import Path
    installed = set(re.search(r"\.whl\[([^\]]*)\]", jobcode.job_script('recsys_lib-0.1-py3-none-any.whl')).group(1).split(','))
    optional = _optional_modules()
    assert optional.get('mlflow') == {'tracking'} and optional.get('papermill') == {'pipelines'}   # the mapping itself works
    missing = {}
    for nb in sorted((ROOT/'pipelines').glob('*.ipynb')):
        cells = [''.join(c['source']) for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'code']
        modules = set()
        for src in cells:
            src = '\n'.join(l for l in src.splitlines() if not l.lstrip().startswith(('%', '!')))
            modules |= _imports(ast.parse(src), top_level=True)
        for m in modules:
            uses = ({m} if not m.startswith('recsys_lib') else
                    _imports(ast.parse((ROOT/Path(*m.split('.'))).with_suffix('.py').read_text()), top_level=False))
            for u in uses:
                for extra in optional.get(u.split('.')[0], set()) - installed - {'spark'}:
                    missing.setdefault(nb.name, set()).add(f"{extra} (for {m}: {u})")
    assert not missing, f"the job installs [{','.join(sorted(installed))}] but: {missing}"


def _batch_model(tmp_path):
    from recsys_lib.models import Popularity
    from recsys_lib.data import Interactions
    from recsys_lib.synthetic import make_synthetic, SYNTHETIC_PRESETS
    Popularity().fit(Interactions.from_df(make_synthetic(**SYNTHETIC_PRESETS['tiny']))).save(tmp_path/'model')
    return tmp_path/'model'


def test_kms_key_is_left_off_volumes_of_instance_types_with_local_storage(aws, wheel, tmp_path, monkeypatch, caplog):
    "botocore: VolumeKmsKeyId cannot be requested for instance types with local (NVMe) storage, which the hardware encrypts."
    import logging
    key = 'arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab'
    monkeypatch.setenv('RECSYS_SAGEMAKER_KMS_KEY', key)
    training, processing = _capture(aws, 'CreateTrainingJob'), _capture(aws, 'CreateProcessingJob')
    model = _batch_model(tmp_path)
    with caplog.at_level(logging.INFO, logger='recsys_lib.sagemaker.cloud'):
        for instance_type in ('ml.g5.xlarge', 'ml.m5.xlarge'):
            monkeypatch.setenv('RECSYS_SAGEMAKER_INSTANCE_TYPE', instance_type)
            submit_job(ROOT/'pipelines'/'train.ipynb', load_settings('sagemaker'), {'preset': 'tiny'}, clients=aws, wheel=wheel)
            submit_job(ROOT/'pipelines'/'batch_inference.ipynb', load_settings('sagemaker'), {'model_path': '$SM_CHANNEL_MODEL'}, channels={'model': model},
                       clients=aws, wheel=wheel)
    nvme, ebs = training
    assert 'VolumeKmsKeyId' not in nvme['ResourceConfig'] and nvme['OutputDataConfig']['KmsKeyId'] == key
    assert ebs['ResourceConfig']['VolumeKmsKeyId'] == key and ebs['OutputDataConfig']['KmsKeyId'] == key
    nvme, ebs = processing
    assert 'VolumeKmsKeyId' not in nvme['ProcessingResources']['ClusterConfig']
    assert all(o['S3Output'].get('KmsKeyId', nvme['ProcessingOutputConfig'].get('KmsKeyId')) == key for o in nvme['ProcessingOutputConfig']['Outputs'])
    assert ebs['ProcessingResources']['ClusterConfig']['VolumeKmsKeyId'] == key
    assert "ml.g5.xlarge has local NVMe storage" in caplog.text


def test_processing_job_runs_on_its_own_instance_count(aws, wheel, tmp_path, monkeypatch):
    "Each processing instance would rerun the whole notebook: the training instance_count does not apply."
    monkeypatch.setenv('RECSYS_SAGEMAKER_INSTANCE_COUNT', '3')
    sent = _capture(aws, 'CreateProcessingJob')
    submit_job(ROOT/'pipelines'/'batch_inference.ipynb', load_settings('sagemaker'), {'model_path': '$SM_CHANNEL_MODEL'}, channels={'model': _batch_model(tmp_path)},
               clients=aws, wheel=wheel)
    assert sent[0]['ProcessingResources']['ClusterConfig']['InstanceCount'] == cloud.PROCESSING_INSTANCE_COUNT == 1


def test_processing_entrypoint_stays_within_the_service_limit_whatever_the_wheel_is_called(aws, wheel, tmp_path):
    "The entrypoint starts job.sh in the code channel; an install command spelt out in it took 231-240 of the 256 characters allowed."
    import shutil
    long_wheel = tmp_path/f"recsys_lib-0.1.0+{'a' * 60}-py3-none-any.whl"
    shutil.copy(wheel, long_wheel)
    sent = _capture(aws, 'CreateProcessingJob')
    submit_job(ROOT/'pipelines'/'batch_inference.ipynb', load_settings('sagemaker'), {'model_path': '$SM_CHANNEL_MODEL'},
               channels={'model': _batch_model(tmp_path)}, clients=aws, wheel=long_wheel)
    entrypoint = sent[0]['AppSpecification']['ContainerEntrypoint']
    assert entrypoint == ['bash', '/opt/ml/processing/input/code/job.sh', 'processing'] and max(map(len, entrypoint)) <= 256
    assert any(k.endswith(f'/code/{long_wheel.name}') for k in _keys(aws))


def test_evaluate_job_is_refused_when_its_registry_is_a_file_the_job_cannot_reach(aws, wheel):
    "The job reads registered models from the profile it was submitted from; a SQLite file there is out of its reach."
    with pytest.raises(Exception, match=r"evaluate.ipynb reads registered models inside the job, but \[sagemaker\] of .* has registry_uri"):
        submit_job(ROOT/'pipelines'/'evaluate.ipynb', load_settings('sagemaker'), {'registered_model': 'm'}, clients=aws, wheel=wheel)
    assert _keys(aws) == []   # nothing uploaded

def test_image_context_for_a_baked_job_image(wheel, tmp_path):
    "recsys image-context: the Dockerfile, job.sh, constraints.txt and the wheel, and the docker build line with AWS's image as the base."
    r = subprocess.run([str(BIN/'recsys'), 'image-context', str(tmp_path/'ctx'), '--wheel', str(wheel), '--profile', 'sagemaker'],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path/'ctx').iterdir()) == sorted(['Dockerfile', 'job.sh', 'constraints.txt', wheel.name])
    assert 'docker build -t recsys-job --build-arg BASE_IMAGE=763104351884.dkr.ecr.' in r.stdout and 'pytorch-training' in r.stdout
    dockerfile = (tmp_path/'ctx'/'Dockerfile').read_text()
    assert (ROOT/'recsys_lib'/'sagemaker'/'Dockerfile').read_text() == dockerfile   # the file the README names
    assert 'RUN bash /opt/recsys/job.sh install' in dockerfile and 'COPY job.sh constraints.txt *.whl /opt/recsys/' in dockerfile
    pins = (tmp_path/'ctx'/'constraints.txt').read_text()
    assert 'uvicorn==' in pins and 'fastapi==' in pins   # the endpoint server the image installs is pinned like the job's packages
    r = subprocess.run([str(BIN/'recsys'), 'image-context', str(tmp_path/'ctx'), '--wheel', str(wheel)], capture_output=True, text=True, timeout=120)
    assert one_line_error(r, 2).endswith('is not an empty folder; image-context writes a fresh build context there')


def test_two_submissions_in_the_same_second_get_different_names(aws, wheel, tmp_path, monkeypatch):
    import datetime as dt
    import sagemaker.train.utils as sdk_utils
    class Frozen(dt.datetime):
        @classmethod
        def now(cls, tz=None): return cls(2026, 12, 6, 3, 0, 0, 500000, tzinfo=tz)
    monkeypatch.setattr(cloud, 'datetime', Frozen)
    monkeypatch.setattr(sdk_utils, 'datetime', Frozen)
    model = _batch_model(tmp_path)
    names = [submit_job(ROOT/'pipelines'/'train.ipynb', load_settings('sagemaker'), {'preset': 'tiny'}, clients=aws, wheel=wheel).name for _ in range(2)]
    names += [submit_job(ROOT/'pipelines'/'batch_inference.ipynb', load_settings('sagemaker'), {'model_path': '$SM_CHANNEL_MODEL'}, channels={'model': model},
                         clients=aws, wheel=wheel).name for _ in range(2)]
    assert len(set(names)) == 4, names
    assert all(cloud.JOB_NAME.fullmatch(n) for n in names), names


def test_scheduled_runs_write_to_a_prefix_of_their_own(aws, wheel):
    "Each execution of a scheduled processing job writes under its pipeline execution id, so runs never overwrite each other."
    from recsys_lib.sagemaker.schedule import schedule_job
    out = schedule_job(ROOT/'pipelines'/'batch_inference.ipynb', '0 5 * * *', load_settings('sagemaker'), {'model_path': '$SM_CHANNEL_MODEL'},
                       channels={'model': f's3://{BUCKET}/models/ease/'}, dry_run=True, wheel=wheel)
    outputs = out['pipeline']['Steps'][0]['Arguments']['ProcessingOutputConfig']['Outputs']
    for o in outputs:
        uri = o['S3Output']['S3Uri']
        assert isinstance(uri, dict) and {'Get': 'Execution.PipelineExecutionId'} in uri['Std:Join']['Values'], uri


def _model_problems(client, operation:str, params:dict)->list:
    """Where `params` break the service model of `client`'s `operation`: botocore's own validator (required members, types,
    minimums) and what it leaves to the service (maximums, patterns, enums)."""
    import re
    from botocore.validate import ParamValidator
    shape = client.meta.service_model.operation_model(operation).input_shape
    report = ParamValidator().validate(params, shape)
    problems = [report.generate_report()] if report.has_errors() else []
    def walk(value, shape, path):
        m = shape.metadata
        if shape.type_name == 'structure':
            for k, v in value.items():
                if k in shape.members: walk(v, shape.members[k], f'{path}.{k}')
        elif shape.type_name == 'list':
            if len(value) > m.get('max', len(value)): problems.append(f"{path}: {len(value)} items, at most {m['max']}")
            for i, v in enumerate(value): walk(v, shape.member, f'{path}[{i}]')
        elif shape.type_name == 'string':
            if len(value) > m.get('max', len(value)): problems.append(f"{path}: {len(value)} characters, at most {m['max']}")
            if 'pattern' in m and not re.fullmatch(m['pattern'], value): problems.append(f"{path}: {value!r} does not match {m['pattern']}")
            if shape.enum and value not in shape.enum: problems.append(f"{path}: {value!r} not in {shape.enum}")
        elif shape.type_name in ('integer', 'long') and value > m.get('max', value):
            problems.append(f"{path}: {value} is over {m['max']}")
    walk(params, shape, operation)
    return problems


def _capture_scheduler(aws, operation):
    sent = []
    aws.scheduler.meta.events.register(f'provide-client-params.scheduler.{operation}', lambda params, **kw: sent.append(params))
    return sent


def test_schedule_without_a_scheduler_role_is_refused_before_anything_is_sent(aws, wheel, monkeypatch, clean_env, tmp_path):
    "The execution role trusts only SageMaker and cannot start a pipeline: a schedule needs its own role, never that one."
    import subprocess
    from conftest import BIN
    from recsys_lib.core import ConfigError
    from recsys_lib.sagemaker.schedule import schedule_job
    monkeypatch.setenv('RECSYS_SAGEMAKER_SCHEDULER_ROLE_ARN', '')
    nb = ROOT/'pipelines'/'batch_inference.ipynb'
    with pytest.raises(ConfigError) as e:
        schedule_job(nb, '0 5 * * *', load_settings('sagemaker'), {'model_path': '$SM_CHANNEL_MODEL'}, channels={'model': f's3://{BUCKET}/models/ease/'},
                     clients=aws, wheel=wheel)
    msg = str(e.value)
    assert '\n' not in msg and 'scheduler_role_arn' in msg and 'scheduler.amazonaws.com' in msg and 'sagemaker:StartPipelineExecution' in msg, msg
    assert _keys(aws) == [] and aws.sagemaker.list_pipelines()['PipelineSummaries'] == [] and aws.scheduler.list_schedules()['Schedules'] == []
    monkeypatch.setenv('RECSYS_SAGEMAKER_SCHEDULER_ROLE_ARN', 'recsys-scheduler')
    with pytest.raises(ConfigError, match="scheduler_role_arn 'recsys-scheduler'.* is not an IAM role ARN"):
        schedule_job(nb, '0 5 * * *', load_settings('sagemaker'), {'model_path': '$SM_CHANNEL_MODEL'}, clients=aws, wheel=wheel)
    # a dry run still shows what it would send, and says the role is missing
    env = {**clean_env, 'SAGEMAKER_USER_CONFIG_OVERRIDE': str(tmp_path/'sm.yaml'), 'HOME': str(tmp_path),
           'AWS_EC2_METADATA_DISABLED': 'true', 'RECSYS_SAGEMAKER_SCHEDULER_ROLE_ARN': ''}
    (tmp_path/'sm.yaml').write_text(cloud.TELEMETRY_OPT_OUT)
    r = subprocess.run([str(BIN/'recsys'), 'schedule', str(ROOT/'pipelines'/'train.ipynb'), '--cron', '0 3 * * *', '--profile', 'sagemaker',
                        '--dry-run', '-p', 'preset', 'tiny'], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and 'Traceback' not in r.stderr, r.stderr[-2000:]
    assert json.loads(r.stdout)['create_schedule_request']['Target']['RoleArn'] is None
    assert 'error: scheduler_role_arn is not set' in r.stderr


def test_schedule_request_is_the_sagemaker_pipeline_target_the_service_model_accepts(aws, wheel):
    "The templated SageMaker target (no hand-written StartPipelineExecution input to get wrong), retries and a dead-letter queue."
    from recsys_lib.sagemaker.schedule import schedule_job
    sent = _capture_scheduler(aws, 'CreateSchedule')
    queue = 'arn:aws:sqs:eu-west-1:111122223333:recsys-schedule-dlq'
    out = schedule_job(ROOT/'pipelines'/'batch_inference.ipynb', '15 5 * * *', load_settings('sagemaker'), {'model_path': '$SM_CHANNEL_MODEL'},
                       channels={'model': f's3://{BUCKET}/models/ease/'}, clients=aws, wheel=wheel, dead_letter_arn=queue)
    assert len(sent) == 1 and _model_problems(aws.scheduler, 'CreateSchedule', sent[0]) == []
    pipeline = aws.sagemaker.describe_pipeline(PipelineName='recsys-batch-inference')
    target = aws.scheduler.get_schedule(Name='recsys-batch-inference')['Target']
    assert target['Arn'] == pipeline['PipelineArn'] == out['pipeline_arn'] and 'Input' not in target
    assert target['SageMakerPipelineParameters'] == {'PipelineParameterList': []}
    assert target['RoleArn'] == 'arn:aws:iam::111122223333:role/recsys-eventbridge-scheduler'
    assert target['RetryPolicy'] == {'MaximumRetryAttempts': 3, 'MaximumEventAgeInSeconds': 3600}
    assert target['DeadLetterConfig'] == {'Arn': queue}
    # updating keeps the same shape; no dead-letter queue unless one is given
    sent = _capture_scheduler(aws, 'UpdateSchedule')
    schedule_job(ROOT/'pipelines'/'batch_inference.ipynb', '15 6 * * *', load_settings('sagemaker'), {'model_path': '$SM_CHANNEL_MODEL'},
                 channels={'model': f's3://{BUCKET}/models/ease/'}, clients=aws, wheel=wheel, max_retries=10)
    assert _model_problems(aws.scheduler, 'UpdateSchedule', sent[0]) == [] and 'DeadLetterConfig' not in sent[0]['Target']
    assert sent[0]['Target']['RetryPolicy']['MaximumRetryAttempts'] == 10
    from recsys_lib.core import ConfigError
    with pytest.raises(ConfigError, match="--dead-letter-arn 'my-queue': expected an SQS queue ARN"):
        schedule_job(ROOT/'pipelines'/'train.ipynb', '0 3 * * *', load_settings('sagemaker'), clients=aws, wheel=wheel, dead_letter_arn='my-queue')
    with pytest.raises(ConfigError, match="--retries 200: EventBridge Scheduler allows 0 to 185"):
        schedule_job(ROOT/'pipelines'/'train.ipynb', '0 3 * * *', load_settings('sagemaker'), clients=aws, wheel=wheel, max_retries=200)
    assert [p['PipelineName'] for p in aws.sagemaker.list_pipelines()['PipelineSummaries']] == ['recsys-batch-inference']


def test_schedule_list_shows_the_last_execution_of_each_schedule(aws, wheel, capsys):
    "The scheduler keeps no invocation history; the pipeline's newest execution says whether last night's run started and how it ended."
    from moto.sagemaker.models import sagemaker_backends
    from recsys_lib.cli import main
    from recsys_lib.sagemaker.schedule import list_schedules, schedule_job
    schedule_job(ROOT/'pipelines'/'batch_inference.ipynb', '15 5 * * *', load_settings('sagemaker'), {'model_path': '$SM_CHANNEL_MODEL'},
                 channels={'model': f's3://{BUCKET}/models/ease/'}, clients=aws, wheel=wheel)
    assert list_schedules(load_settings('sagemaker'), clients=aws)[0]['last_execution'] is None
    aws.sagemaker.start_pipeline_execution(PipelineName='recsys-batch-inference', ClientRequestToken='a' * 32)
    newest = aws.sagemaker.start_pipeline_execution(PipelineName='recsys-batch-inference', ClientRequestToken='b' * 32)['PipelineExecutionArn']
    # moto's executions all succeed at once: make the newest one fail, as a real one can
    execution = sagemaker_backends['123456789012'][REGION].pipelines['recsys-batch-inference'].pipeline_executions[newest]
    execution.pipeline_execution_status, execution.pipeline_execution_failure_reason = 'Failed', 'ClientError: no such image'
    [row] = list_schedules(load_settings('sagemaker'), clients=aws)
    assert row['pipeline'] == 'recsys-batch-inference' and row['last_execution']['status'] == 'Failed'
    assert row['last_execution']['failure_reason'] == 'ClientError: no such image' and row['last_execution']['start'] is not None
    assert main(['schedule', '--list', '--profile', 'sagemaker']) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith('recsys-batch-inference') and 'last run Failed' in line and 'ClientError: no such image' in line, line


# --- cost (issue 18): estimates before a job, from a fake Price List API client; never the real API ---

@pytest.fixture(autouse=True)
def _prices(offline_prices): "Every test here prices offline (conftest's `offline_prices`)."


def test_recsys_run_prints_the_estimated_maximum_cost_before_the_upload(aws, wheel, monkeypatch, capsys):
    from dataclasses import replace
    from recsys_lib.cli import main
    from recsys_lib.sagemaker.cost import FakePricing
    monkeypatch.setenv('RECSYS_WHEEL', str(wheel))
    monkeypatch.setenv('RECSYS_SAGEMAKER_INSTANCE_COUNT', '2')
    priced = replace(aws, pricing=FakePricing({('ml.g5.xlarge', REGION, 'training'): 1.572}))
    monkeypatch.setattr(AwsClients, 'connect', classmethod(lambda cls, settings, max_attempts=8: priced))
    assert main(['run', str(ROOT/'pipelines'/'train.ipynb'), '--profile', 'sagemaker', '-p', 'preset', 'tiny', '--no-wait']) == 0
    err = capsys.readouterr().err
    line = next(l for l in err.splitlines() if l.startswith('estimated cost:'))
    assert '$75.46 on demand' in line and '2 x ml.g5.xlarge at $1.572/h (AWS Price List API)' in line   # 1.572 x 2 x 24 h
    assert err.index('estimated cost:') < err.index('submitted training job')


def test_schedule_dry_run_shows_the_cost_of_each_run(aws, wheel, capsys):
    from recsys_lib.sagemaker.schedule import schedule_job
    out = schedule_job(ROOT/'pipelines'/'train.ipynb', '0 3 * * *', load_settings('sagemaker'), {'preset': 'tiny'}, dry_run=True, wheel=wheel)
    assert out['cost']['max_usd'] == pytest.approx(1.408 * 24) and out['cost']['kind'] == 'training'   # the settings table: no API here
    assert 'estimated cost per scheduled run: training job at most $33.79' in capsys.readouterr().err


def test_dry_run_job_checks_and_prices_without_sending_anything(aws, wheel):
    from recsys_lib.sagemaker.cloud import dry_run_job
    out = dry_run_job(ROOT/'pipelines'/'train.ipynb', load_settings('sagemaker'), {'preset': 'tiny'}, wheel=wheel)
    assert out['kind'] == 'training' and out['hyperparameters']['recsys_notebook'] == 'train.ipynb'
    assert out['cost']['max_usd'] == pytest.approx(1.408 * 24) and out['cost']['line'].startswith('estimated cost: training job at most $33.79')
    assert _keys(aws) == [] and aws.sagemaker.list_training_jobs()['TrainingJobSummaries'] == []


def test_recsys_run_dry_run_prints_the_job_and_its_cost_and_refuses_over_budget(aws, wheel, monkeypatch, capsys):
    from recsys_lib.cli import main
    monkeypatch.setenv('RECSYS_WHEEL', str(wheel))
    argv = ['run', str(ROOT/'pipelines'/'train.ipynb'), '--profile', 'sagemaker', '-p', 'preset', 'tiny', '--dry-run']
    assert main(argv) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out['kind'] == 'training' and out['cost']['max_usd'] == pytest.approx(1.408 * 24)
    assert 'estimated cost: training job at most $33.79' in captured.err
    monkeypatch.setenv('RECSYS_SAGEMAKER_MAX_JOB_COST_USD', '10')
    assert main(argv) == 2
    assert 'max_job_cost_usd' in capsys.readouterr().err
    assert _keys(aws) == [] and aws.sagemaker.list_training_jobs()['TrainingJobSummaries'] == []   # neither sent anything
    assert main(['run', str(ROOT/'pipelines'/'train.ipynb'), '--dry-run']) == 2   # the local profile has nothing to price
