"""The quickstart tutorial in a real JupyterLab, driven by Playwright in the system Chromium: open it, run all cells,
see the metrics table and the plot, no error output. Run by `make test-browser` (which installs Debian's chromium
when it is missing); marked `browser`, so the default run leaves it out."""
import json, os, secrets, shutil, socket, subprocess, time, urllib.request
from pathlib import Path

import pytest

from conftest import BIN, ROOT

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which('chromium') or '/usr/bin/chromium'
# these machines' closed network: no sandbox for root, no GPU, none of Chromium's background connections
CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync', '--disable-quic']


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _wait_for_server(url: str, proc, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None: raise RuntimeError(f"JupyterLab exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r: return json.load(r)
        except OSError: time.sleep(0.5)
    raise TimeoutError(f"JupyterLab did not answer at {url} within {timeout} s")


# every code cell has an execution count: [n], neither [ ] (not run) nor [*] (running)
ALL_CELLS_RAN = """() => {
    const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')];
    return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
}"""


@pytest.fixture
def lab(tmp_path, clean_env):
    "JupyterLab on 127.0.0.1 with a token, serving a copy of the quickstart (Lab autosaves what it runs)."
    root = tmp_path/'lab'
    root.mkdir()
    shutil.copy(ROOT/'nbs'/'tutorials'/'01_quickstart.ipynb', root)
    port, token = _free_port(), secrets.token_hex(16)
    env = {**clean_env, 'JUPYTER_CONFIG_DIR': str(tmp_path/'config'), 'JUPYTER_RUNTIME_DIR': str(tmp_path/'runtime'),
           'JUPYTERLAB_WORKSPACES_DIR': str(tmp_path/'workspaces'), 'MPLBACKEND': 'module://matplotlib_inline.backend_inline'}
    proc = subprocess.Popen([str(BIN/'jupyter'), 'lab', '--no-browser', '--ServerApp.ip=127.0.0.1', f'--ServerApp.port={port}',
                             f'--IdentityProvider.token={token}', f'--ServerApp.root_dir={root}',
                             '--ZMQChannelsWebsocketConnection.kernel_ws_protocol=', *(['--allow-root'] if os.geteuid() == 0 else [])],
                            env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path/'lab.log', 'w'))
    try:
        _wait_for_server(f"http://127.0.0.1:{port}/api/status?token={token}", proc)
        yield f"http://127.0.0.1:{port}", token
    finally:
        proc.terminate()
        try: proc.wait(20)
        except subprocess.TimeoutExpired: proc.kill()


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no Chromium: `make test-browser` installs Debian's chromium")
def test_quickstart_runs_in_jupyterlab(lab, tmp_path):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout, expect, sync_playwright
    base, token = lab
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={'width': 1400, 'height': 1000})
        page.goto(f"{base}/lab/tree/01_quickstart.ipynb?token={token}")
        expect(page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]')).to_have_count(1, timeout=90_000)
        # Lab reconnects the kernel's websocket just after the kernel starts ("Replacing stale connection" in its log),
        # and execute requests sent in that moment are lost: let it settle, and run again once if nothing came back
        page.wait_for_timeout(3000)
        timeout_ms = int(os.environ.get('RECSYS_BROWSER_TIMEOUT_S', 180)) * 1000
        for attempt in (1, 2):
            page.locator('.lm-MenuBar-itemLabel').get_by_text('Run', exact=True).click()
            page.locator('.lm-Menu-itemLabel').get_by_text('Run All Cells', exact=True).click()
            try:
                page.wait_for_function(ALL_CELLS_RAN, timeout=timeout_ms // 2 if attempt == 1 else timeout_ms)
                break
            except PlaywrightTimeout:
                page.screenshot(path=str(tmp_path/f'timeout-{attempt}.png'), full_page=True)
                if attempt == 2: raise
        outputs = page.locator('.jp-OutputArea-output')
        page.screenshot(path=str(tmp_path/'quickstart.png'), full_page=True)
        assert outputs.locator('table').filter(has_text='ndcg@10').count() >= 1, "no metrics table"
        assert outputs.locator('img').count() >= 1, "no plot"
        errors = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
        assert errors.count() == 0, f"error output: {errors.all_inner_texts()}"
        browser.close()
    assert (tmp_path/'quickstart.png').stat().st_size > 10_000
    print(f"screenshot: {tmp_path/'quickstart.png'}")
