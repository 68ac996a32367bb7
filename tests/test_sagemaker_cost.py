"""What a cloud job costs, without AWS or network: prices from a fake Price List API client that answers realistic
GetProducts pages (moto does not implement `pricing`), the settings fallback when the API refuses, the refusal of a job
over `max_job_cost_usd` before anything is staged, and the cost of a finished job recorded on its run."""
import io, json, os, tarfile
from dataclasses import replace

import moto
import pytest
from botocore.exceptions import ClientError, NoCredentialsError

from recsys_lib.core import ConfigError
from recsys_lib.runs import list_runs
from recsys_lib.sagemaker import cloud, cost
from recsys_lib.sagemaker.cost import (FakePricing, check_budget, clear_price_cache, instance_price, job_cost_estimate,
                                       price_list_item, query_price)
from recsys_lib.settings import load_settings

from conftest import ROOT, isolated_tracking

BUCKET, REGION = 'recsys-test-bucket', 'eu-west-1'
DENIED = ClientError({'Error': {'Code': 'AccessDeniedException', 'Message': 'User is not authorized to perform: pricing:GetProducts'}},
                     'GetProducts')


def settings(profile='sagemaker', **values):
    s = load_settings(profile)
    return replace(s, values={**s.values, **values})


@pytest.fixture(autouse=True)
def fresh_prices(monkeypatch):
    "No price cached from another test; and no test here reaches the real Price List API: an injected client, or none (the table)."
    clear_price_cache()
    real = cost.pricing_client
    offline = FakePricing(error=NoCredentialsError())
    monkeypatch.setattr(cost, 'pricing_client', lambda clients=None: real(clients)
                        if hasattr(clients, 'get_products') or getattr(clients, 'pricing', None) is not None else offline)
    monkeypatch.setenv('RECSYS_SETTINGS', str(ROOT/'settings.ini'))
    yield
    clear_price_cache()


def test_price_comes_from_a_realistic_get_products_page():
    page = {'FormatVersion': 'aws_v1', 'PriceList': [price_list_item('ml.g5.xlarge', REGION, 1.572, 'training')]}
    class Client:
        def get_products(self, **kw): self.kw = kw; return page
    client = Client()
    assert instance_price('ml.g5.xlarge', REGION, settings(), client) == (1.572, 'AWS Price List API')
    filters = {f['Field']: f['Value'] for f in client.kw['Filters']}
    assert client.kw['ServiceCode'] == 'AmazonSageMaker'
    assert filters == {'regionCode': REGION, 'instanceName': 'ml.g5.xlarge', 'component': 'Training'}
    item = json.loads(page['PriceList'][0])   # the shape the real API answers: a JSON string per product
    dims = next(iter(next(iter(item['terms']['OnDemand'].values()))['priceDimensions'].values()))
    assert dims['unit'] == 'Hrs' and dims['pricePerUnit']['USD'].startswith('1.572')


def test_training_processing_and_hosting_are_priced_apart():
    fake = FakePricing({('ml.m5.xlarge', REGION, 'training'): 0.269, ('ml.m5.xlarge', REGION, 'processing'): 0.261,
                        ('ml.m5.xlarge', REGION, 'endpoint'): 0.258})
    assert [instance_price('ml.m5.xlarge', REGION, settings(), fake, k)[0] for k in ('training', 'processing', 'endpoint')] == [0.269, 0.261, 0.258]
    assert len(fake.calls) == 3
    instance_price('ml.m5.xlarge', REGION, settings(), fake, 'training')
    assert len(fake.calls) == 3   # cached per process


@pytest.mark.parametrize('error', [NoCredentialsError(), DENIED])
def test_settings_table_answers_when_the_api_refuses(error):
    usd, source = instance_price('ml.g5.xlarge', REGION, settings(), FakePricing(error=error))
    assert usd == 1.408 and 'instance_prices_usd' in source and type(error).__name__ in source


def test_settings_table_answers_when_the_api_has_no_such_product():
    usd, source = instance_price('ml.c5.xlarge', REGION, settings(), FakePricing({}))
    assert usd == 0.204 and 'no Training product for ml.c5.xlarge' in source


def test_a_type_in_neither_is_an_error_naming_it_and_the_key():
    with pytest.raises(ConfigError, match=r'ml\.p4d\.24xlarge.*instance_prices_usd'):
        instance_price('ml.p4d.24xlarge', REGION, settings(), FakePricing(error=DENIED))


def test_job_estimate_spot_and_budget():
    fake = FakePricing({('ml.g5.xlarge', REGION, 'training'): 1.5})
    est = job_cost_estimate(settings(instance_count=2, max_runtime_s=3 * 3600), 'training', fake)
    assert est.max_usd == 9.0 and est.spot_usd is None and '$9.00 on demand' in est.line()
    spot = job_cost_estimate(settings(use_spot=True), 'training', fake)
    assert spot.spot_usd == pytest.approx(spot.max_usd * 0.3) and 'spot about' in spot.line()
    assert check_budget(est, settings(max_job_cost_usd=9.0)) is est
    with pytest.raises(ConfigError, match=r'\$9\.00 exceeds max_job_cost_usd = \$8\.00'): check_budget(est, settings(max_job_cost_usd=8.0))
    assert job_cost_estimate(load_settings('sagemaker-local')).line().endswith('local: no charge (training runs on this machine)')


@pytest.fixture
def aws(tmp_path, monkeypatch):
    import tempfile
    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path))
    for k in [k for k in os.environ if k.startswith(('RECSYS_', 'AWS_'))]: monkeypatch.delenv(k)
    env = {'RECSYS_SETTINGS': str(ROOT/'settings.ini'), 'SAGEMAKER_VALIDATE_ROLE': 'false', 'AWS_ACCESS_KEY_ID': 'testing',
           'AWS_SECRET_ACCESS_KEY': 'testing', 'AWS_DEFAULT_REGION': REGION, 'SAGEMAKER_USER_CONFIG_OVERRIDE': str(tmp_path/'sm-config.yaml'),
           'RECSYS_SAGEMAKER_RUNS_DIR': str(tmp_path/'runs'), 'RECSYS_SAGEMAKER_DATA_DIR': str(tmp_path/'data'),
           'RECSYS_SAGEMAKER_S3_PREFIX': f's3://{BUCKET}/recsys'}
    env.update({k.replace('RECSYS_LOCAL_', 'RECSYS_SAGEMAKER_'): v for k, v in isolated_tracking(tmp_path).items()})
    (tmp_path/'sm-config.yaml').write_text(cloud.TELEMETRY_OPT_OUT)
    for k, v in env.items(): monkeypatch.setenv(k, v)
    with moto.mock_aws():
        clients = cloud._mock_clients(REGION)
        clients.s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={'LocationConstraint': REGION})
        yield clients


def test_over_budget_run_exits_2_with_nothing_staged(aws, monkeypatch, capsys):
    "`recsys run --profile sagemaker` over max_job_cost_usd: exit 2, both figures named, no S3 object, no job, no wheel built."
    from recsys_lib.cli import main
    monkeypatch.setenv('RECSYS_SAGEMAKER_MAX_JOB_COST_USD', '10')
    monkeypatch.setattr(cloud, 'build_wheel', lambda *a, **kw: pytest.fail("a refused job built a wheel"))
    assert main(['run', str(ROOT/'pipelines'/'train.ipynb'), '--profile', 'sagemaker', '-p', 'preset', 'tiny', '--no-wait']) == 2
    err = capsys.readouterr().err
    assert 'estimated maximum cost $33.79 exceeds max_job_cost_usd = $10.00' in err   # 1.408 $/h (settings table) x 1 x 24 h
    assert aws.s3.list_objects_v2(Bucket=BUCKET).get('KeyCount', 0) == 0
    assert aws.sagemaker.list_training_jobs()['TrainingJobSummaries'] == []


def test_over_budget_schedule_is_refused_also_in_a_dry_run(aws, monkeypatch):
    from recsys_lib.sagemaker.schedule import schedule_job
    with pytest.raises(ConfigError, match='exceeds max_job_cost_usd'):
        schedule_job(ROOT/'pipelines'/'train.ipynb', '0 3 * * *', settings(max_job_cost_usd=1.0), {'preset': 'tiny'}, dry_run=True)


def _output_archive(path, run_id='train/20261201T030000-abcdef'):
    "A training job's output.tar.gz as the container entrypoint leaves it: the run's records and job.json."
    files = {'manifest.json': {'run_id': run_id, 'status': 'succeeded', 'notebook': 'train.ipynb'},
             'metrics.json': {'test_ndcg@10': 0.31, 'valid_ndcg@10': 0.29}, 'params.json': {'model': 'ease'},
             'job.json': {'status': 'succeeded', 'run_id': run_id}}
    with tarfile.open(path, 'w:gz') as tf:
        for name, obj in files.items():
            data = json.dumps(obj).encode(); ti = tarfile.TarInfo(name); ti.size = len(data); tf.addfile(ti, io.BytesIO(data))
    return path


@pytest.mark.parametrize('status', ['Completed', 'Failed'])
def test_finished_job_records_billable_seconds_times_price(aws, tmp_path, status):
    name = 'recsys-train-20261201030000'
    aws.s3.upload_file(str(_output_archive(tmp_path/'output.tar.gz')), BUCKET, f'recsys/jobs/{name}/output/output.tar.gz')
    desc = {'TrainingJobName': name, 'TrainingJobStatus': status, 'SecondaryStatus': status, 'BillableTimeInSeconds': 1800,
            'ResourceConfig': {'InstanceType': 'ml.g5.xlarge', 'InstanceCount': 2, 'VolumeSizeInGB': 50},
            'OutputDataConfig': {'S3OutputPath': f's3://{BUCKET}/recsys/jobs'}, 'FailureReason': 'boom' if status == 'Failed' else None}
    clients = replace(aws, pricing=FakePricing({('ml.g5.xlarge', REGION, 'training'): 1.572}))
    res = cloud.finish_job(cloud.SubmittedJob(name, 'training', 'sagemaker', 'train.ipynb'), desc, clients, load_settings('sagemaker'), track=False)
    assert res.metrics['cost_usd'] == pytest.approx(1800 * 2 * 1.572 / 3600)
    assert json.loads((res.run_dir/'metrics.json').read_text())['cost_usd'] == res.metrics['cost_usd']
    recorded = json.loads((res.run_dir/'manifest.json').read_text())['cost']
    assert recorded['billable_s'] == 1800 and recorded['instance_count'] == 2 and recorded['source'] == 'AWS Price List API'
    if status == 'Completed':   # `recsys runs` shows it after the key metric
        assert list_runs(load_settings('sagemaker').runs_dir)['key_metric'][0] == 'ndcg@10 test=0.31 valid=0.29, cost $1.57'


def test_processing_job_is_billed_from_start_to_end():
    from datetime import datetime, timezone
    t0 = datetime(2026, 12, 1, 3, tzinfo=timezone.utc)
    desc = {'ProcessingJobStatus': 'Completed', 'ProcessingStartTime': t0, 'ProcessingEndTime': t0.replace(minute=30),
            'ProcessingResources': {'ClusterConfig': {'InstanceType': 'ml.m5.xlarge', 'InstanceCount': 1}}}
    got = cost.job_cost(desc, settings(), FakePricing({('ml.m5.xlarge', REGION, 'processing'): 0.261}))
    assert got['usd'] == pytest.approx(0.1305) and got['kind'] == 'processing'
    assert cost.job_cost({'TrainingJobStatus': 'Completed'}, settings(), FakePricing()) is None   # no billable time reported: none recorded
