"""SageMaker real-time endpoints without AWS: request shapes against moto's in-process mock (create on instances and
serverless, autoscaling), validation before any call, a dry run that sends nothing, updates and their failures
(Failed, rolled back) through a small fake client (moto has no UpdateEndpoint), and the container's `serve` run for
real through the sagemaker-local profile: /ping and /invocations over 127.0.0.1."""
import io, json, os, tarfile
from dataclasses import replace

import moto
import pytest

from recsys_lib.core import ConfigError
from recsys_lib.sagemaker import endpoint as E
from recsys_lib.sagemaker.endpoint import EndpointClients, EndpointError, deploy, deploy_request, serve_local
from recsys_lib.settings import load_settings

from conftest import ROOT, sagemaker_profiles_env

BUCKET, REGION = 'recsys-test-bucket', 'eu-west-1'
IMAGE = '111122223333.dkr.ecr.eu-west-1.amazonaws.com/recsys:1.0'


@pytest.fixture
def env(tmp_path, monkeypatch):
    "The sagemaker profiles with their stores under tmp_path, an image, moto-friendly instances; no inherited overrides."
    sagemaker_profiles_env(tmp_path, monkeypatch, BUCKET, REGION, RECSYS_SAGEMAKER_ENDPOINT_IMAGE_URI=IMAGE,
                           RECSYS_SAGEMAKER_ENDPOINT_INSTANCE_TYPE='ml.c5.xlarge')  # moto 5.2 knows no c6i
    return tmp_path


@pytest.fixture
def aws(env):
    with moto.mock_aws():
        clients = E._mock_endpoint_clients(REGION)
        clients.s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={'LocationConstraint': REGION})
        yield clients


@pytest.fixture(scope='module')
def model_dir(tmp_path_factory):
    from recsys_lib.data import Interactions
    from recsys_lib.models import Popularity
    from recsys_lib.synthetic import make_synthetic
    d = tmp_path_factory.mktemp('artifact')/'movies'
    Popularity().fit(Interactions.from_df(make_synthetic(n_users=50, n_items=30, n_interactions=400, seed=0))).save(d)
    return d


def settings(**values):
    s = load_settings('sagemaker')
    return replace(s, values={**s.values, **values})


def _capture(clients, service, operation):
    "The requests of `operation` as boto3 sends them."
    sent = []
    client = {'sagemaker': clients.sagemaker, 'application-auto-scaling': clients.autoscaling}[service]
    client.meta.events.register(f'provide-client-params.{service}.{operation}', lambda params, **kw: sent.append(params))
    return sent


def test_create_on_instances_with_autoscaling(aws, model_dir):
    sent_model, sent_cfg = _capture(aws, 'sagemaker', 'CreateModel'), _capture(aws, 'sagemaker', 'CreateEndpointConfig')
    s = settings(endpoint_instance_count=2, endpoint_max_instances=5, endpoint_invocations_per_instance=300,
                 kms_key='arn:aws:kms:eu-west-1:111122223333:key/k', subnets=['subnet-1'], security_groups=['sg-1'])
    res = deploy(model_dir, s, clients=aws, poll_s=0, out=io.StringIO())
    name = res['endpoint_name']
    assert (name, res['status'], res['model']) == ('recsys-movies', 'InService', {'name': 'movies', 'version': None})
    ep = aws.sagemaker.describe_endpoint(EndpointName=name)
    assert ep['EndpointConfigName'] == res['endpoint_config_name'] and ep['EndpointStatus'] == 'InService'
    model = sent_model[0]
    assert model['ExecutionRoleArn'] == s.role_arn and model['VpcConfig'] == {'Subnets': ['subnet-1'], 'SecurityGroupIds': ['sg-1']}
    assert model['PrimaryContainer']['Image'] == IMAGE and model['PrimaryContainer']['ModelDataUrl'] == res['model_data']
    assert {'Key': 'project', 'Value': 'recsys_lib'} in model['Tags']
    assert sent_cfg[0]['ProductionVariants'] == [{'VariantName': 'AllTraffic', 'ModelName': res['model_name'], 'InstanceType': 'ml.c5.xlarge',
                                                  'InitialInstanceCount': 2, 'InitialVariantWeight': 1.0}]
    assert sent_cfg[0]['KmsKeyId'] == s.kms_key
    # the archive: the artifact's files at its root, under its SHA-256, encrypted with the profile's key
    key = res['model_data'][len(f's3://{BUCKET}/'):]
    assert key.startswith('recsys/endpoints/models/') and key.endswith('/model.tar.gz')
    obj = aws.s3.get_object(Bucket=BUCKET, Key=key)
    assert obj['ServerSideEncryption'] == 'aws:kms'
    with tarfile.open(fileobj=io.BytesIO(obj['Body'].read())) as tf: names = tf.getnames()
    assert {'manifest.json', 'endpoint.json'} <= set(names) and not any('/' in n for n in names)
    # autoscaling: target tracking on invocations per instance between the instance count and the maximum
    target = aws.autoscaling.describe_scalable_targets(ServiceNamespace='sagemaker')['ScalableTargets'][0]
    assert (target['ResourceId'], target['ScalableDimension'], target['MinCapacity'], target['MaxCapacity']) == (
        'endpoint/recsys-movies/variant/AllTraffic', 'sagemaker:variant:DesiredInstanceCount', 2, 5)
    policy = aws.autoscaling.describe_scaling_policies(ServiceNamespace='sagemaker')['ScalingPolicies'][0]
    cfg = policy['TargetTrackingScalingPolicyConfiguration']
    assert policy['PolicyType'] == 'TargetTrackingScaling' and cfg['TargetValue'] == 300.0
    assert cfg['PredefinedMetricSpecification'] == {'PredefinedMetricType': 'SageMakerVariantInvocationsPerInstance'}
    assert res['invoke'].startswith('aws sagemaker-runtime invoke-endpoint --region eu-west-1 --endpoint-name recsys-movies --content-type application/json')
    assert res['invoke'].endswith(' out.json') and '"user_id"' in res['invoke']
    # a second first-deploy refuses, before creating anything
    n_models = len(aws.sagemaker.list_models()['Models'])
    with pytest.raises(ConfigError, match='already exists .* --update'): deploy(model_dir, s, clients=aws, out=io.StringIO())
    assert len(aws.sagemaker.list_models()['Models']) == n_models
    gone = E.delete_endpoint(name, s, aws)
    assert gone['autoscaling'] and not aws.sagemaker.list_endpoints()['Endpoints'] and not aws.sagemaker.list_models()['Models']


def test_create_serverless(aws, model_dir):
    sent = _capture(aws, 'sagemaker', 'CreateEndpointConfig')
    s = settings(endpoint_instance_type=None, endpoint_serverless_memory_mb=3072, endpoint_serverless_max_concurrency=20,
                 kms_key='arn:aws:kms:eu-west-1:111122223333:key/k')
    res = deploy(model_dir, s, clients=aws, endpoint_name='movies-serverless', poll_s=0, out=io.StringIO())
    assert res['endpoint_name'] == 'movies-serverless' and res['autoscaling'] is None
    assert sent[0]['ProductionVariants'] == [{'VariantName': 'AllTraffic', 'ModelName': res['model_name'],
                                              'ServerlessConfig': {'MemorySizeInMB': 3072, 'MaxConcurrency': 20}}]
    assert 'KmsKeyId' not in sent[0]
    assert not aws.autoscaling.describe_scalable_targets(ServiceNamespace='sagemaker')['ScalableTargets']


class Refuses:
    "A client that fails the test on any call."
    def __getattr__(self, name):
        def call(*a, **kw): raise AssertionError(f"{name} was called")
        return call


def test_dry_run_sends_nothing(env, model_dir):
    refuses = EndpointClients(None, Refuses(), Refuses(), Refuses())
    res = deploy(model_dir, settings(endpoint_max_instances=3, endpoint_invocations_per_instance=100), dry_run=True, clients=refuses)
    assert res['dry_run'] and res['status'] == 'dry-run'
    assert list(res['requests']) == ['upload_file', 'create_model', 'create_endpoint_config', 'create_endpoint',
                                     'register_scalable_target', 'put_scaling_policy']
    up = deploy(model_dir, settings(), dry_run=True, update=True, clients=refuses)
    assert 'update_endpoint' in up['requests'] and 'create_endpoint' not in up['requests']


@pytest.mark.parametrize('values, message', [
    (dict(endpoint_image_uri=None), 'endpoint_image_uri is empty, and so is image_uri'),
    (dict(endpoint_instance_type=None), 'needs endpoint_serverless_memory_mb and endpoint_serverless_max_concurrency'),
    (dict(endpoint_instance_type=None, endpoint_serverless_memory_mb=1000, endpoint_serverless_max_concurrency=5), 'endpoint_serverless_memory_mb is 1000'),
    (dict(endpoint_instance_type=None, endpoint_serverless_memory_mb=1024, endpoint_serverless_max_concurrency=0), 'endpoint_serverless_max_concurrency is 0'),
    (dict(endpoint_instance_type=None, endpoint_serverless_memory_mb=1024, endpoint_serverless_max_concurrency=5, endpoint_max_instances=2,
          endpoint_invocations_per_instance=9), 'for a serverless endpoint'),
    (dict(endpoint_max_instances=3), 'sets endpoint_max_instances but not endpoint_invocations_per_instance'),
    (dict(endpoint_instance_count=4, endpoint_max_instances=3, endpoint_invocations_per_instance=9), 'below endpoint_instance_count'),
    (dict(role_arn='my-role'), "role_arn 'my-role'"),
    (dict(endpoint_instance_type='c5.xlarge'), "endpoint_instance_type 'c5.xlarge'"),
    (dict(tags=['project']), "tag 'project'"),
])
def test_invalid_settings_are_refused_before_any_call(env, model_dir, values, message):
    refuses = EndpointClients(None, Refuses(), Refuses(), Refuses())
    with pytest.raises(ConfigError, match=message.replace('(', r'\(')): deploy(model_dir, settings(**values), clients=refuses)


def test_no_wait_with_autoscaling_is_refused_before_any_call(env, model_dir):
    refuses = EndpointClients(None, Refuses(), Refuses(), Refuses())
    with pytest.raises(ConfigError, match='needs the deploy to wait'):
        deploy(model_dir, settings(endpoint_max_instances=3, endpoint_invocations_per_instance=100), wait=False, clients=refuses)


class FakeSageMaker:
    "An existing endpoint; `update_endpoint` starts scripted DescribeEndpoint answers (moto has no UpdateEndpoint)."
    def __init__(self, after_update, instance_type='ml.c5.xlarge'):
        self.after, self.config, self.calls, self.states = after_update, 'recsys-movies-v1-old', [], None
        self.instance_type = instance_type
    def describe_endpoint(self, EndpointName):
        if self.states is None: return {'EndpointName': EndpointName, 'EndpointStatus': 'InService', 'EndpointConfigName': self.config}
        status, config, reason = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return {'EndpointName': EndpointName, 'EndpointStatus': status, 'EndpointConfigName': config or self.new,
                **({'FailureReason': reason} if reason else {})}
    def describe_endpoint_config(self, EndpointConfigName):
        return {'ProductionVariants': [{'VariantName': 'AllTraffic', 'InstanceType': self.instance_type, 'ModelName': 'm'}]}
    def create_model(self, **kw): self.calls.append(('create_model', kw))
    def create_endpoint_config(self, **kw): self.calls.append(('create_endpoint_config', kw))
    def create_endpoint(self, **kw): raise AssertionError('an update must not create an endpoint')
    def update_endpoint(self, EndpointName, EndpointConfigName):
        self.calls.append(('update_endpoint', EndpointConfigName)); self.new = EndpointConfigName
        self.states = [(s, self.config if c == 'old' else None, r) for s, c, r in self.after]


class FakeScaling:
    def __init__(self, registered): self.registered, self.calls = registered, []
    def describe_scalable_targets(self, **kw): return {'ScalableTargets': [{'ResourceId': kw['ResourceIds'][0]}] if self.registered else []}
    def __getattr__(self, name): return lambda **kw: self.calls.append(name)


def _fake(aws, sm, scaling=None): return EndpointClients(aws.session, sm, aws.s3, scaling or FakeScaling(False))


def test_update_rolls_a_new_config(aws, model_dir):
    sm = FakeSageMaker([('Updating', 'old', None), ('Updating', None, None), ('InService', None, None)])
    scaling = FakeScaling(True)
    res = deploy(model_dir, settings(endpoint_max_instances=3, endpoint_invocations_per_instance=100), update=True,
                 clients=_fake(aws, sm, scaling), poll_s=0, out=io.StringIO())
    assert res['status'] == 'InService' and res['update'] and sm.calls[-1] == ('update_endpoint', res['endpoint_config_name'])
    assert [c[0] for c in sm.calls] == ['create_model', 'create_endpoint_config', 'update_endpoint']
    # same instance type: the scalable target stays; it is registered again with the profile's bounds
    assert scaling.calls == ['register_scalable_target', 'put_scaling_policy']


def test_update_changing_instance_type_deregisters_autoscaling_first(aws, model_dir):
    sm, scaling = FakeSageMaker([('InService', None, None)], instance_type='ml.m5.xlarge'), FakeScaling(True)
    deploy(model_dir, settings(), update=True, clients=_fake(aws, sm, scaling), poll_s=0, out=io.StringIO())
    assert scaling.calls == ['deregister_scalable_target']


def test_update_rolled_back_is_an_error_naming_the_reason(aws, model_dir):
    sm = FakeSageMaker([('Updating', None, None), ('RollingBack', None, None),
                        ('InService', 'old', 'The primary container for production variant AllTraffic did not pass the ping health check.')])
    with pytest.raises(EndpointError, match='was rolled back: The primary container .* did not pass the ping health check.*still serves recsys-movies-v1-old'):
        deploy(model_dir, settings(), update=True, clients=_fake(aws, sm), poll_s=0, out=io.StringIO())


def test_update_that_fails_is_an_error_naming_the_reason(aws, model_dir):
    sm = FakeSageMaker([('Updating', None, None), ('Failed', None, 'Image does not exist')])
    with pytest.raises(EndpointError, match='failed: Image does not exist.*delete-endpoint --endpoint-name recsys-movies'):
        deploy(model_dir, settings(), update=True, clients=_fake(aws, sm), poll_s=0, out=io.StringIO())


def test_update_of_a_missing_or_busy_endpoint_creates_nothing(aws, model_dir):
    with pytest.raises(ConfigError, match='does not exist .* deploy without it'):
        deploy(model_dir, settings(), update=True, clients=aws, out=io.StringIO())
    assert not aws.sagemaker.list_models()['Models']
    sm = FakeSageMaker([])
    sm.describe_endpoint = lambda EndpointName: {'EndpointName': EndpointName, 'EndpointStatus': 'Updating', 'EndpointConfigName': 'x'}
    with pytest.raises(EndpointError, match='is Updating; SageMaker updates an endpoint that is InService'):
        deploy(model_dir, settings(), update=True, clients=_fake(aws, sm), out=io.StringIO())
    assert sm.calls == []


def test_registered_version_is_deployed_with_its_checksum(aws, env, model_dir):
    from recsys_lib import registry, tracking
    from recsys_lib.core import write_json
    s = settings()
    run = env/'runs'/'20_train'/'r1'
    write_json(run/'params.json', {'model': 'popularity'}); write_json(run/'metrics.json', {'ndcg@10': 0.1})
    write_json(run/'20_train.ipynb', {'cells': [], 'metadata': {}, 'nbformat': 4, 'nbformat_minor': 5}); write_json(run/'manifest.json', {'status': 'succeeded'})
    import shutil; shutil.copytree(model_dir, run/'model', dirs_exist_ok=True)
    version = registry.register_model('movies', tracking.log_run(run, profile=s), s, alias='champion')
    res = deploy('movies@champion', s, clients=aws, poll_s=0, out=io.StringIO())
    assert res['model'] == {'name': 'movies', 'version': version} and f"-v{version}-" in res['model_name']
    key = res['model_data'][len(f's3://{BUCKET}/'):]
    with tarfile.open(fileobj=io.BytesIO(aws.s3.get_object(Bucket=BUCKET, Key=key)['Body'].read())) as tf:
        info = json.load(tf.extractfile('endpoint.json'))
    assert info['model']['name'] == 'movies' and info['model']['version'] == version and info['model']['alias'] == 'champion'
    with pytest.raises(ConfigError, match="has no alias 'nope'"): deploy('movies@nope', s, clients=aws, out=io.StringIO())


def test_sagemaker_local_serves_ping_and_invocations(env, model_dir):
    "The container's `serve` command, in SageMaker's layout and environment, answers /ping and /invocations like the model."
    from recsys_lib.models import load_model
    model = load_model(model_dir)
    users = [u.item() for u in model.trained_users[:3]]
    with serve_local(model_dir, load_settings('sagemaker-local'), port=E._free_port(), startup_s=60) as ep:
        assert ep.ping()
        one = ep.invoke({'user_id': users[0], 'k': 5})
        batch = ep.invoke({'users': [{'user_id': u} for u in users], 'k': 5})
        root = ep.root
        assert (root/'model'/'manifest.json').is_file() and (root/'model'/'endpoint.json').is_file()
    assert not ep.running and not root.exists()
    expected = model.recommend(users, k=5)
    assert one['recommendations'][0]['items'] == expected[expected.user_id == users[0]].item_id.tolist()
    for r in batch['recommendations']:
        assert r['items'] == expected[expected.user_id == r['user_id']].item_id.tolist()


def test_deploy_on_sagemaker_local_returns_url_and_a_handle(env, model_dir):
    res = deploy(model_dir, load_settings('sagemaker-local'), port=E._free_port())
    try:
        assert res['status'] == 'InService' and res['url'].startswith('http://127.0.0.1:') and res['local'].ping()
        assert res['invoke'].startswith(f"curl -s -X POST {res['url']}/invocations")
    finally: res['local'].stop()
    assert not res['local'].running
    with pytest.raises(ConfigError, match='--update is for sagemaker endpoints'):
        deploy(model_dir, load_settings('sagemaker-local'), update=True)


def test_container_without_a_model_exits_with_one_line(env, tmp_path):
    import subprocess, sys
    r = subprocess.run([sys.executable, '-m', 'recsys_lib.sagemaker.endpoint', 'serve'], capture_output=True, text=True, timeout=60,
                       env={**os.environ, 'RECSYS_SM_ROOT': str(tmp_path/'empty')})
    assert r.returncode == 2 and 'holds no manifest.json' in r.stderr and 'Traceback' not in r.stderr


def test_image_serve_is_the_module_script():
    from importlib.resources import files
    docker = (files('recsys_lib.sagemaker')/'Dockerfile').read_text()
    assert all(line in docker for line in E.SERVE_SCRIPT.splitlines()) and '/usr/local/bin/serve' in docker
    assert 'RUN bash /opt/recsys/job.sh install' in docker   # jobs keep their install


def test_cli_dry_run_prints_every_request_and_sends_nothing(env, model_dir, capsys, monkeypatch):
    from recsys_lib.cli import main
    monkeypatch.setattr(EndpointClients, 'connect', classmethod(lambda cls, s: pytest.fail("a dry run connected to AWS")))
    assert main(['deploy', str(model_dir), '--dry-run']) == 0
    requests = json.loads(capsys.readouterr().out)
    assert list(requests) == ['upload_file', 'create_model', 'create_endpoint_config', 'create_endpoint']
    assert requests['create_endpoint']['EndpointName'] == 'recsys-movies'


@pytest.mark.parametrize('argv, message', [
    (['deploy'], 'recsys deploy needs a SOURCE'),
    (['deploy', 'movies@champion', '--delete', 'recsys-movies'], '--delete recsys-movies takes no SOURCE'),
])
def test_cli_refuses_with_one_line(env, capsys, argv, message):
    from recsys_lib.cli import main
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_cli_sagemaker_local_runs_in_the_foreground_until_sigterm(env, model_dir):
    "`recsys deploy --profile sagemaker-local` prints the URL, answers /invocations, and stops cleanly (container gone) on SIGTERM."
    import signal, subprocess, time, urllib.request
    port = E._free_port()
    p = subprocess.Popen([str(ROOT/'.venv/bin/recsys'), 'deploy', str(model_dir), '--profile', 'sagemaker-local', '--port', str(port)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        for line in p.stdout:
            if 'Ctrl-C stops it' in line or time.monotonic() > deadline: break
        body = json.dumps({'user_id': 1, 'k': 3}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body, headers={'Content-Type': 'application/json'})
        with urllib.request.urlopen(req, timeout=10) as r: answer = json.loads(r.read())
        assert len(answer['recommendations'][0]['items']) == 3
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0
    finally:
        if p.poll() is None: p.kill(); p.wait()
    assert 'recsys deploy: stopped' in p.stderr.read()
    with pytest.raises(OSError): urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)


# --- cost (issue 18): per hour at the autoscaling maximum and per million requests; never the real Price List API ---

@pytest.fixture(autouse=True)
def _prices(offline_prices): "Every test here prices offline (conftest's `offline_prices`)."


def test_dry_run_shows_cost_per_hour_and_per_million_requests(env, model_dir):
    from recsys_lib.sagemaker.cost import FakePricing
    refuses = EndpointClients(None, Refuses(), Refuses(), Refuses(), pricing=FakePricing({('ml.c5.xlarge', REGION, 'endpoint'): 0.238}))
    out = io.StringIO()
    res = deploy(model_dir, settings(endpoint_max_instances=3, endpoint_invocations_per_instance=100), dry_run=True, clients=refuses,
                 out=out, requests_per_s=1000)
    c = res['cost']
    assert (c['instance_count'], c['usd_per_hour_total'], c['source']) == (3, 0.714, 'AWS Price List API')   # at the autoscaling maximum
    assert c['usd_per_million'] == pytest.approx(0.238 / 3.6, abs=1e-4)   # one instance busy at 1,000 requests/s
    assert 'endpoint $0.71/hour at 3 instance(s), $0.07 per million requests at 1,000 requests/s per instance' in out.getvalue()


def test_cli_over_endpoint_budget_exits_2_before_anything(env, model_dir, capsys, monkeypatch):
    from recsys_lib.cli import main
    monkeypatch.setattr(EndpointClients, 'connect', classmethod(lambda cls, s: pytest.fail("an endpoint over budget connected to AWS")))
    monkeypatch.setattr(E, 'fetch_model', lambda *a, **kw: pytest.fail("an endpoint over budget fetched its model"))
    monkeypatch.setenv('RECSYS_SAGEMAKER_MAX_ENDPOINT_COST_USD_PER_HOUR', '0.1')
    assert main(['deploy', str(model_dir), '--dry-run']) == 2
    assert 'estimated maximum cost $0.20/hour exceeds max_endpoint_cost_usd_per_hour = $0.10/hour' in capsys.readouterr().err  # ml.c5.xlarge: 0.204 in the table


def test_cli_dry_run_prints_the_estimate(env, model_dir, capsys):
    from recsys_lib.cli import main
    assert main(['deploy', str(model_dir), '--dry-run']) == 0
    out = capsys.readouterr()
    assert 'create_endpoint' in json.loads(out.out)
    assert 'estimated cost: endpoint $0.20/hour at 1 instance(s)' in out.err and 'per million requests' in out.err
