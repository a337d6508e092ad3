"""The tuner in a real browser: JupyterLab on 127.0.0.1, headless Debian chromium through Playwright.

Opens notebook 02 on builtin-tiny, runs it, moves the lower bound of the range slider, picks a class,
clicks Save, and checks the files the kernel wrote against what the page shows and what the kernel
holds. Needs `apt-get install chromium` and `pip install playwright` (never `playwright install`):
without them the test skips, unless LTKIT_REQUIRE_BROWSER=1 (CI), where it fails instead.
The screenshot is kept as build/test-artifacts/tuner.png.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import papermill
import pytest

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO / "build" / "test-artifacts"
NOTEBOOK = REPO / "notebooks" / "02_neighbour_crawl.ipynb"
KERNEL_READY = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!k && k.connectionStatus === 'connected' && k.status === 'idle';
}"""
KERNEL_EVAL = """async (code) => {
  const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  const f = k.requestExecute({code, silent: false, store_history: false});
  let out = null;
  f.onIOPub = (msg) => { if (msg.header.msg_type === 'execute_result') out = msg.content.data['text/plain']; };
  await f.done;
  return out;
}"""


def _browser_or_skip():
    try:
        from playwright.sync_api import sync_playwright  # noqa: F401
    except ImportError:
        why = "playwright is not installed (pip install playwright)"
    else:
        why = None if Path(CHROMIUM).exists() else "chromium is not installed (apt-get install -y chromium)"
    if why and os.environ.get("LTKIT_REQUIRE_BROWSER") == "1":
        pytest.fail(why + "; LTKIT_REQUIRE_BROWSER=1 asks for the browser test")
    if why:
        pytest.skip(why)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def lab(tiny_world, world_cache, tmp_path):
    """JupyterLab serving a copy of notebook 02 set to builtin-tiny; yields (url, notebook folder, crawl folder)."""
    _browser_or_skip()
    from ltkit.pretrain import pool_pretrained

    pool_pretrained(tiny_world, epochs=6)  # the tiny preset's filter encoder; shared with test_models' cache
    nb_dir, crawl = tmp_path / "nb", tmp_path / "crawl"
    nb_dir.mkdir()
    # papermill only writes the copy with an injected-parameters cell; the browser runs it
    papermill.execute_notebook(str(NOTEBOOK), str(nb_dir / "02.ipynb"), prepare_only=True, kernel_name="python3",
                               parameters={"preset": "builtin-tiny", "out_dir": str(crawl)})
    home = tmp_path / "jupyter"
    settings = home / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"autoStartDefaultKernel": True}))
    news = home / "settings" / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)  # no "get notified about Jupyter news?" toast over the widgets
    (news / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_DATA_DIR": str(home / "data"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "IPYTHONDIR": str(home / "ipython"),
           "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
           "LTKIT_CACHE": str(world_cache), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    port, token = _free_port(), os.urandom(12).hex()
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip", "127.0.0.1", "--port", str(port),
         "--allow-root", f"--IdentityProvider.token={token}", "--LabApp.expose_app_in_browser=True",
         "--LabApp.news_url=None", f"--ServerApp.root_dir={nb_dir}"],
        env=env, cwd=nb_dir, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "lab.log", "w"),
        start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=1)
                break
            except OSError:
                if server.poll() is not None:
                    raise RuntimeError("jupyter lab exited:\n" + (tmp_path / "lab.log").read_text()[-2000:])
                time.sleep(0.25)
        yield f"{base}/lab/tree/02.ipynb?reset&token={token}", nb_dir, crawl
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and the kernels it started
        server.wait(timeout=20)


def test_tuner_in_jupyterlab(lab, tmp_path):
    from playwright.sync_api import sync_playwright

    url, _, crawl = lab
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1300, "height": 1700})
        try:
            page.goto(url)
            page.wait_for_function(KERNEL_READY, timeout=90_000)
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            applied = page.locator(".jp-OutputArea-output .ltkit-applied")
            applied.wait_for(timeout=180_000)
            page.wait_for_function(KERNEL_READY, timeout=180_000)  # every cell has run
            g1, g2 = (float(x) for x in page.evaluate(KERNEL_EVAL, "tuner.window.value").strip("()").split(","))
            # move the lower bound down 10 steps (0.01 each) with the keyboard, as a user would
            page.locator(".jp-OutputArea-output .noUi-handle-lower").focus()
            for _ in range(10):
                page.keyboard.press("ArrowLeft")
            want = f"γ1={g1 - 0.10:.2f} γ2={g2:.2f}"
            page.wait_for_function("(w) => [...document.querySelectorAll('.ltkit-applied')].some("
                                   "e => e.textContent.includes(w))", arg=want, timeout=30_000)
            # pick the third class of the list (sorted by most affected) by typing its name in the search box
            option = page.locator(".jp-OutputArea-output .ltkit-classes select option").nth(2)
            name = " ".join(option.inner_text().split("·")[0].split())  # the list shows no-break spaces
            page.locator(".jp-OutputArea-output .ltkit-search input").fill(name)
            page.wait_for_function("(n) => [...document.querySelectorAll('.ltkit-class')].some("
                                   "e => e.textContent === n)", arg=name, timeout=30_000)
            page.locator(".jp-OutputArea-output button.ltkit-save").click()
            page.locator(".jp-OutputArea-output .ltkit-status", has_text="saved").wait_for(timeout=30_000)
            kept_page = int(applied.locator(".ltkit-kept").inner_text())
            cls_kept_page = int(applied.locator(".ltkit-class-kept").inner_text())
            kernel = json.loads(page.evaluate(KERNEL_EVAL, "import json; json.dumps(tuner.counts())").strip("'"))
            tuner = page.locator(".jp-OutputArea-output .ltkit-tuner")
            tuner.scroll_into_view_if_needed()
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            tuner.screenshot(path=str(tmp_path / "tuner.png"))
            shutil.copy(tmp_path / "tuner.png", ARTIFACTS / "tuner.png")
        except Exception:  # keep what the page showed: the screenshot and any error output of a cell
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "tuner-failure.png"), full_page=True)
            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
            print("cell errors:", [errors.nth(i).inner_text()[-800:] for i in range(errors.count())])
            print("applied:", [e.inner_text() for e in page.locator(".ltkit-applied").all()])
            print("kernel:", page.evaluate(KERNEL_EVAL, "tuner.search.value, tuner.classes.value, tuner.settings"))
            raise
        finally:
            browser.close()
    saved = json.loads((crawl / "filter.json").read_text())
    assert saved["settings"]["gamma1"] == pytest.approx(g1 - 0.10) and saved["settings"]["gamma2"] == pytest.approx(g2)
    assert saved["saved_by"] == "tuner" and saved["kept"] == kept_page == kernel["kept"]
    assert cls_kept_page == kernel["cls_kept"] and kernel["cls"] is not None
    accepted = (crawl / "accepted.csv").read_text().splitlines()
    assert len(accepted) - 1 == kept_page
    assert len((crawl / "filter_manifest.jsonl").read_text().splitlines()) == saved["images"] == kernel["images"]
    assert (tmp_path / "tuner.png").stat().st_size > 10_000
