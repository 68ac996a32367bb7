"""`recsys serve`: the HTTP API against batch scoring, fresh histories for every model, bad requests, the token, a hot
swap under load against a real MLflow registry and a real uvicorn server, and the CLI."""
import asyncio, json, os, shutil, signal, socket, subprocess, threading, time, urllib.request, warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import BIN

pytest.importorskip('fastapi')
import httpx, uvicorn
from fastapi.testclient import TestClient

from recsys_lib.core import ConfigError, write_json
from recsys_lib.data import Interactions
from recsys_lib.ease import EASE
from recsys_lib.inference import batch_recommend, read_recommendations
from recsys_lib.models import load_model, model_class
from recsys_lib.serve import TOKEN_ENV, create_app, run_server
from recsys_lib.settings import load_settings


@pytest.fixture(scope='module')
def ease(inter): return EASE(l2=100.0).fit(inter)


@pytest.fixture(scope='module')
def folder(ease, tmp_path_factory): return ease.save(tmp_path_factory.mktemp('serve')/'ease')


@pytest.fixture
def settings(env): return load_settings('local')   # `env`: the project's settings, stores under tmp_path, no RECSYS_* (token) inherited


@pytest.fixture
def client(folder, settings): return TestClient(create_app(folder, settings=settings))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def by_user(df: pd.DataFrame) -> dict:
    "A `recommend` / batch table as {user: (items, scores, ranks, fallback)}."
    return {u: (g.item_id.tolist(), g.score.to_numpy('float32'), g['rank'].tolist(), bool(g.fallback.iloc[0]))
            for u, g in df.sort_values(['rank']).groupby('user_id', sort=False)}


def check_same(rows: list, want: dict):
    "The server's rows are the table's lists: same ids (and id types), same float32 scores, ranks and fallback flags."
    assert {r['user_id'] for r in rows} == set(want)
    for r in rows:
        items, scores, ranks, fallback = want[r['user_id']]
        assert r['items'] == items and [type(i) for i in r['items']] == [type(i) for i in items], r['user_id']
        assert np.array_equal(np.asarray(r['scores'], 'float32'), scores), r['user_id']
        assert (r['ranks'], r['fallback']) == (ranks, fallback)


@pytest.mark.parametrize('kind', ['int', 'str'])
def test_lists_equal_the_batch_output_for_the_same_users(kind, tiny, settings, tmp_path):
    df = tiny.assign(user_id='u' + tiny.user_id.astype(str), item_id='i' + tiny.item_id.astype(str)) if kind == 'str' else tiny
    model = EASE(l2=100.0).fit(Interactions.from_df(df))
    c = TestClient(create_app(model.save(tmp_path/'m'), settings=settings))
    users = model.user_map_.ids[:40].tolist() + (['nobody'] if kind == 'str' else [10**9])   # the last one: popularity fallback
    batch_recommend(model, tmp_path/'batch', users=users, k=10, progress=False)
    want = by_user(read_recommendations(tmp_path/'batch'))
    batch = c.post('/recommend', json={'users': [{'user_id': u} for u in users], 'k': 10})
    assert batch.status_code == 200 and batch.headers['x-model-version'] == 'none'
    check_same(batch.json()['recommendations'], want)
    for route, u in [('/recommend', users[0]), ('/invocations', users[1]), ('/recommend', users[-1])]:
        one = c.post(route, json={'user_id': u, 'k': 10}).json()['recommendations']
        check_same(one, {u: want[u]})
    assert batch.json()['recommendations'][-1]['fallback']


def fit(name: str, inter: Interactions):
    params = {'als': dict(factors=8, iterations=3), 'itemknn': dict(neighbors=20),
              'sasrec': dict(max_len=6, hidden=8, n_heads=2, n_layers=1, batch_size=32, max_epochs=1, accelerator='cpu')}.get(name, {})
    if name == 'als': pytest.importorskip('implicit')
    if name == 'sasrec': pytest.importorskip('torch')
    return model_class(name)(**params).fit(inter)


@pytest.mark.parametrize('name', ['popularity', 'itemknn', 'ease', 'als', 'sasrec'])   # sasrec: 4 s, a tiny CPU model
def test_fresh_history_answers_as_recommend_history(name, inter, settings, tmp_path):
    folder = fit(name, inter).save(tmp_path/name)
    model, c = load_model(folder), TestClient(create_app(folder, settings=settings))
    ids = model.item_map_.ids.tolist()
    hist = {model.user_map_.ids[0].item(): ids[:3], 10**9: ids[5:9] + [10**9], model.user_map_.ids[1].item(): [], 10**9 + 1: [10**9]}
    for options in ({}, {'with_training': True}, {'exclude_seen': False, 'items': ids[:40]}):
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            want = model.recommend_history(hist, k=5, **options)
        r = c.post('/recommend', json={'users': [{'user_id': u, 'history': h} for u, h in hist.items()], 'k': 5, **options})
        assert r.status_code == 200, r.text
        rows = r.json()['recommendations']
        check_same(rows, by_user(want))
        assert {x['user_id']: x['skipped_history_items'] for x in rows if x['skipped_history_items']} == want.attrs['skipped_items']


def test_health_metadata_metrics_ping(client, ease):
    assert client.get('/ping').status_code == 200
    health = client.get('/health').json()
    assert health['status'] == 'ok' and health['model'] == {'name': 'ease', 'version': None}
    card = client.get('/metadata').json()
    assert (card['model'], card['train_fingerprint'], card['user_id_kind'], card['item_id_kind'], card['n_items']) == \
        ('ease', ease.train_fingerprint_, 'int', 'int', len(ease.item_map_))
    client.post('/recommend', json={'users': [{'user_id': 10**9}, {'user_id': ease.user_map_.ids[0].item()}]})
    client.post('/recommend', json={'user_id': 'x'})
    r = client.get('/metrics')
    assert r.status_code == 200 and r.headers['content-type'].startswith('text/plain')
    text = r.text
    for line in ['recsys_serve_requests_total{route="/recommend",status="200"} 1.0', 'recsys_serve_requests_total{route="/recommend",status="422"} 1.0',
                 'recsys_serve_fallback_users_total 1.0', 'recsys_serve_users_total 2.0', 'recsys_serve_model_version 0.0',
                 'recsys_serve_request_seconds_count{route="/recommend"} 2.0', 'recsys_serve_model_swap_failures_total 0.0']:
        assert line in text, (line, text)
    assert 'recsys_serve_model_info{' in text and 'model="ease"' in text


BAD = [  # (body, status, what the message must say)
    (b'{"user_id": 1,', 400, 'malformed JSON'),
    (b'', 400, 'malformed JSON'),
    (b'[1, 2]', 422, '(body)'),
    (b'{"user_id": 1, "exlude_seen": false}', 422, 'exlude_seen: Extra inputs are not permitted'),
    (b'{"user_id": 1, "k": "ten"}', 422, 'k: Input should be a valid integer'),
    (b'{"user_id": 1, "k": 0}', 422, 'k: Input should be greater than or equal to 1'),
    (b'{"user_id": 1, "k": 100000}', 422, 'is larger than the'),
    (b'{"users": [{"user_id": 1.5}]}', 422, 'users.0.user_id: expected an id'),
    (b'{"users": [{"user_id": 1, "history": [null]}]}', 422, 'users.0.history.0'),
    (b'{"user_id": "1"}', 422, 'trained on int ids'),
    (b'{"user_id": 1, "history": ["a"]}', 422, 'trained on int ids'),
    (b'{"user_id": 1, "items": ["a"]}', 422, 'trained on int ids'),
    (b'{"user_id": 1, "items": []}', 422, 'items is empty'),
    (b'{"users": []}', 422, 'users is empty'),
    (b'{"k": 3}', 422, 'pass either user_id'),
    (b'{"user_id": 1, "history": [1, 2], "timestamps": [1]}', 422, 'one per history item'),
    (b'{"user_id": 1, "history": [1, 2], "timestamps": [NaN, 1]}', 422, 'timestamps.0'),
    (b'{"users": [{"user_id": 1}, {"user_id": 2}, {"user_id": 3}, {"user_id": 4}]}', 422, 'at most 3 (serve_max_users)'),
    (b'{"user_id": 1, "history": [%s]}' % b','.join([b'1'] * 1000), 413, 'over 1 KiB'),
]


@pytest.mark.parametrize('body,status,says', BAD, ids=[f"{s}-{i}" for i, (_, s, _) in enumerate(BAD)])
def test_bad_requests_get_4xx_naming_the_problem(body, status, says, folder, env, monkeypatch):
    monkeypatch.setenv('RECSYS_LOCAL_SERVE_MAX_USERS', '3')
    monkeypatch.setenv('RECSYS_LOCAL_SERVE_BODY_LIMIT_KIB', '1')
    c = TestClient(create_app(folder, settings=load_settings('local')))
    r = c.post('/invocations', content=body, headers={'content-type': 'application/json'})
    assert r.status_code == status, r.text
    assert says in r.json()['error'], r.json()
    if status == 422 and r.json().get('errors'): assert all(e['field'] for e in r.json()['errors'])


def test_a_streamed_body_over_the_limit_is_413_and_a_fault_is_a_short_500(folder, env, monkeypatch):
    monkeypatch.setenv('RECSYS_LOCAL_SERVE_BODY_LIMIT_KIB', '1')
    c = TestClient(create_app(folder, settings=load_settings('local')), raise_server_exceptions=False)
    def chunks():   # no Content-Length: the limit is counted as the body arrives
        yield b'{"user_id": 1, "history": ['
        for _ in range(100): yield b'1,' * 50
        yield b'1]}'
    assert c.post('/recommend', content=chunks()).status_code == 413
    c.app.state.server.current.model.topk_block = lambda *a, **k: 1 / 0   # a bug, not bad input
    r = c.post('/recommend', json={'user_id': 1})
    assert r.status_code == 500 and 'internal error' in r.json()['error'] and 'ZeroDivision' not in r.text


def test_the_token_guards_everything_but_the_probes(folder, settings, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, 'tok-123')
    c = TestClient(create_app(folder, settings=settings))
    assert c.get('/health').status_code == 200 and c.get('/ping').status_code == 200
    for route in ('/metadata', '/metrics'): assert c.get(route).status_code == 401
    for auth in (None, 'Bearer wrong', 'tok-123', 'Basic tok-123'):
        r = c.post('/recommend', json={'user_id': 1}, headers={'Authorization': auth} if auth else {})
        assert r.status_code == 401 and r.headers['www-authenticate'] == 'Bearer' and 'tok-123' not in r.text
    assert c.post('/recommend', json={'user_id': 1}, headers={'Authorization': 'Bearer tok-123'}).status_code == 200
    with pytest.raises(ConfigError, match='without a bearer token'):
        run_server(folder, settings=settings, host='0.0.0.0', token='')


# --- hot swap: a real registry, a real server, a promotion mid-load ---------------------------------------------------

def registered_run(runs, name: str, model) -> str:
    "A successful run directory with `model`, logged to the MLflow store of the current settings."
    from recsys_lib.tracking import log_run
    d = runs/'20_train'/name
    write_json(d/'params.json', {'model': model.name})
    write_json(d/'metrics.json', {'ndcg@10': 0.1})
    write_json(d/'20_train.ipynb', {'cells': [], 'metadata': {}, 'nbformat': 4, 'nbformat_minor': 5})
    write_json(d/'manifest.json', {'status': 'succeeded'})
    model.save(d/'model')
    return log_run(d)


class ThreadServer:
    "uvicorn serving `app` on 127.0.0.1 in a thread; stops on exit."
    def __init__(self, app):
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host='127.0.0.1', port=self.port, log_level='warning', lifespan='on'))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the server did not start"
            time.sleep(0.05)
        return f'http://127.0.0.1:{self.port}'
    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(15)


@pytest.fixture(scope='session')
def empty_db(tmp_path_factory):
    "An empty, migrated MLflow database: migrating one takes seconds, copying it none."
    MlflowClient = pytest.importorskip('mlflow').MlflowClient
    db = tmp_path_factory.mktemp('template')/'mlflow.db'
    MlflowClient(f'sqlite:///{db}').search_experiments()
    return db


def test_hot_swap_under_load_fails_no_request_and_switches_version(inter, settings, env, empty_db):
    shutil.copy(empty_db, env/'mlflow.db')   # the store `env` points the settings at
    from recsys_lib import registry as R
    v1 = R.register_model('served', registered_run(env/'runs', 'r1', EASE(l2=100.0).fit(inter)), settings)
    v2 = R.register_model('served', registered_run(env/'runs', 'r2', EASE(l2=900.0).fit(inter)), settings)
    R.set_alias('served', 'champion', v1, settings)
    app = create_app('served@champion', settings=settings, poll_interval=0.1)
    users = inter.user_map.ids[:50].tolist()
    seen, failures, promoted = [], [], []

    async def load(url):
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            async def client(w):
                i = w
                while time.monotonic() < stop and not (seen[-100:].count(v2) == 100):
                    r = await c.post('/recommend', json={'user_id': users[i % len(users)], 'k': 10})
                    if r.status_code != 200: failures.append((r.status_code, r.text[:200]))
                    else:
                        assert r.json()['model']['version'] == int(r.headers['x-model-version'])
                        seen.append(r.json()['model']['version'])
                    i += 8
                    if len(seen) >= 100 and not promoted:   # promote mid-run, once
                        promoted.append(v2)
                        await asyncio.to_thread(R.set_alias, 'served', 'champion', v2, settings)
            await asyncio.gather(*[client(w) for w in range(8)])

    with ThreadServer(app) as url:
        stop = time.monotonic() + 30   # bounded: whatever happens, the load ends within 30 s
        asyncio.run(load(url))
        health = json.loads(urllib.request.urlopen(f'{url}/health', timeout=5).read())
    assert not failures, failures[:3]
    assert seen[:100] == [v1] * 100 and seen[-100:] == [v2] * 100 and set(seen) == {v1, v2}, (seen.count(v1), seen.count(v2))
    assert (health['model']['version'], health['swaps'], health['failed_swaps'], health['status']) == (v2, 1, 0, 'ok')
    assert not app.state.server._thread.is_alive()   # the poller stopped with the server


# --- the command line ---------------------------------------------------------------------------------------------------

def wait_health(url: str, proc, seconds: float = 60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate(timeout=5)
        try: return json.loads(urllib.request.urlopen(f'{url}/health', timeout=1).read())
        except OSError: time.sleep(0.2)
    pytest.fail(f"recsys serve did not answer {url}/health within {seconds} s")


@pytest.mark.parametrize('workers', [1, pytest.param(2, marks=pytest.mark.slow)])
def test_cli_serves_a_model_folder_and_stops_on_sigterm(workers, folder, ease, clean_env):
    port = free_port()
    proc = subprocess.Popen([str(BIN/'recsys'), 'serve', str(folder), '--port', str(port), '--workers', str(workers)],
                            env=clean_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        url = f'http://127.0.0.1:{port}'
        assert wait_health(url, proc)['status'] == 'ok'
        u = ease.user_map_.ids[0].item()
        req = urllib.request.Request(f'{url}/recommend', json.dumps({'user_id': u, 'k': 5}).encode(), {'content-type': 'application/json'})
        got = json.loads(urllib.request.urlopen(req, timeout=5).read())['recommendations'][0]
        assert got['items'] == ease.recommend([u], k=5).item_id.tolist()
    finally:
        if proc.poll() is None: os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    assert out.startswith(f"recsys serve: ease (ease, {len(ease.item_map_):,} items) on http://127.0.0.1:{port}"), out
    assert 'Traceback' not in err and err.rstrip().endswith('recsys serve: stopped'), err[-2000:]


@pytest.mark.parametrize('args,says', [
    (['recsys-demo'], "expected a folder, NAME@ALIAS"),
    (['{folder}', '--host', '0.0.0.0'], "without a bearer token"),
    (['{folder}', '--version', '2'], "is a model folder"),
    (['{folder}', '--port', '99999'], "port=99999; expected a TCP port from 1 to 65535"),   # uvicorn would wrap it silently
    (['{folder}', '--port', '{busy}'], "Address already in use; choose another --port"),
])
def test_cli_refuses_with_one_line(args, says, folder, clean_env):
    from conftest import one_line_error
    with socket.socket() as busy:
        busy.bind(('127.0.0.1', 0)); busy.listen()
        argv = [a.format(folder=folder, busy=busy.getsockname()[1]) for a in args]
        r = subprocess.run([str(BIN/'recsys'), 'serve', *argv], env=clean_env, capture_output=True, text=True, timeout=60)
    assert says in one_line_error(r, 2)


def test_a_corrupted_new_version_is_not_swapped_in(inter, settings, env, empty_db):
    "The alias moves to a version whose stored arrays were altered: the old version keeps serving, /health says why."
    shutil.copy(empty_db, env/'mlflow.db')
    from recsys_lib import registry as R
    from recsys_lib.tracking import connect
    v1 = R.register_model('served', registered_run(env/'runs', 'r1', EASE(l2=100.0).fit(inter)), settings)
    v2 = R.register_model('served', registered_run(env/'runs', 'r2', EASE(l2=900.0).fit(inter)), settings)
    R.set_alias('served', 'champion', v1, settings)
    app = create_app('served@champion', settings=settings, poll_interval=0)
    client = TestClient(app)
    _, mlflow_client = connect(settings)
    stored = mlflow_client.get_model_version_download_uri('served', str(v2)).removeprefix('file://')
    arrays = next(Path(stored).rglob('arrays.npz'))
    data = bytearray(arrays.read_bytes()); data[len(data) // 2] ^= 0xFF
    arrays.write_bytes(bytes(data))   # one byte changed: the checksum no longer matches
    R.set_alias('served', 'champion', v2, settings)
    assert app.state.server.poll() is False
    health = client.get('/health').json()
    assert (health['status'], health['model']['version'], health['failed_swaps']) == ('degraded', v1, 1)
    assert f'v{v2}' in health['last_error'] and 'arrays.npz' in health['last_error']
    r = client.post('/recommend', json={'user_id': int(inter.user_map.ids[0]), 'k': 5})
    assert r.status_code == 200 and r.headers['x-model-version'] == str(v1)
    assert 'recsys_serve_model_swap_failures_total 1.0' in client.get('/metrics').text
