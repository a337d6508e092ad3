"""The tuner and notebook 04 in a real browser: JupyterLab on 127.0.0.1, headless Debian chromium through Playwright.

Opens notebook 02 on builtin-tiny, runs it, checks the tuner's layout (the range readout and the caption
toggle do not overlap, the toggle is one row, the echo line is not cut), moves the lower bound of the range
slider and waits for the histogram to change, clicks an image (a manual override), picks a class, clicks
Save and waits for the saved state, then checks the files the kernel wrote against what the page shows and
what the kernel holds. A second test runs notebook 04 on builtin-tiny in the browser and checks that every
figure it saves is shown. Needs `apt-get install chromium` and `pip install playwright` (never
`playwright install`): without them the tests skip, unless LTKIT_REQUIRE_BROWSER=1 (CI), where they fail.
Screenshots: tuner.png (before the move), tuner_moved.png (after it), notebook04.png, in build/screenshots/, or in
the folder LTKIT_SCREENSHOTS names (`LTKIT_SCREENSHOTS=figures` refreshes the README's copies).
"""
import json
import os
import re
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
# Screenshots go to build/ unless LTKIT_SCREENSHOTS names a folder: `LTKIT_SCREENSHOTS=figures` refreshes the
# README's (a test run never changes tracked files by itself).
FIGURES = Path(os.environ.get("LTKIT_SCREENSHOTS") or REPO / "build" / "screenshots")
if not FIGURES.is_absolute():
    FIGURES = REPO / FIGURES
FIGURES.mkdir(parents=True, exist_ok=True)
ARTIFACTS = REPO / "build" / "test-artifacts"
NOTEBOOKS = REPO / "notebooks"
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
# Every code cell has started (an execution count) and the kernel is idle again, or a cell failed.
ALL_RUN = """() => {
  const w = window.jupyterapp.shell.currentWidget, cells = w.content.model.cells;
  let done = true, failed = false;
  for (let i = 0; i < cells.length; i++) {
    const c = cells.get(i);
    if (c.type !== 'code') continue;
    done = done && c.executionCount !== null;
    for (let j = 0; j < c.outputs.length; j++) failed = failed || c.outputs.get(j).type === 'error';
  }
  return failed || (done && w.sessionContext.session.kernel.status === 'idle');
}"""
ERRORS = """() => {
  const cells = window.jupyterapp.shell.currentWidget.content.model.cells, out = [];
  for (let i = 0; i < cells.length; i++) {
    const c = cells.get(i);
    if (c.type !== 'code') continue;
    for (let j = 0; j < c.outputs.length; j++) {
      const o = c.outputs.get(j).toJSON();
      if (o.output_type === 'error') out.push(o.ename + ': ' + o.evalue);
    }
  }
  return out;
}"""
# Boxes of the tuner's top controls; the readout's *text* box, since its text can overflow its element.
LAYOUT = """() => {
  const t = document.querySelector('.jp-OutputArea-output .ltkit-tuner');
  const box = (b) => ({left: b.left, right: b.right, top: b.top, bottom: b.bottom});
  const readout = t.querySelector('.ltkit-window .widget-readout');
  const range = document.createRange();
  range.selectNodeContents(readout);
  const applied = t.querySelector('.ltkit-applied .widget-html-content');
  return {readout: box(range.getBoundingClientRect()), toggle: box(t.querySelector('.ltkit-caption').getBoundingClientRect()),
          toggle_rows: new Set([...t.querySelectorAll('.ltkit-caption button')].map(b => Math.round(b.getBoundingClientRect().top))).size,
          tuner: box(t.getBoundingClientRect()), applied_cut: applied.scrollWidth > applied.clientWidth + 1};
}"""


def _overlap(a: dict, b: dict) -> bool:
    return a["left"] < b["right"] and b["left"] < a["right"] and a["top"] < b["bottom"] and b["top"] < a["bottom"]


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
    """JupyterLab serving copies of notebooks 02 and 04 set to builtin-tiny; yields (url of a notebook, folder, crawl)."""
    _browser_or_skip()
    from ltkit.pretrain import pool_pretrained

    pool_pretrained(tiny_world, epochs=6)  # the tiny preset's filter encoder; shared with test_models' cache
    nb_dir, crawl = tmp_path / "nb", tmp_path / "crawl"
    nb_dir.mkdir()
    # papermill only writes the copy with an injected-parameters cell; the browser runs it
    papermill.execute_notebook(str(NOTEBOOKS / "02_neighbour_crawl.ipynb"), str(nb_dir / "02.ipynb"), prepare_only=True,
                               kernel_name="python3", parameters={"preset": "builtin-tiny", "out_dir": str(crawl)})
    papermill.execute_notebook(str(NOTEBOOKS / "04_feature_visualization.ipynb"), str(nb_dir / "04.ipynb"),
                               prepare_only=True, kernel_name="python3",
                               parameters={"preset": "builtin-tiny", "out_dir": str(tmp_path / "runs"),
                                           "figures_dir": str(tmp_path / "figures"), "ablations": {"k": [1, 3]}})
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
        yield lambda name: f"{base}/lab/tree/{name}?reset&token={token}", nb_dir, crawl
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and the kernels it started
        server.wait(timeout=20)


def _run_all(page, url: str, timeout_s: int) -> None:
    """Open a notebook, wait for its kernel, run every cell and wait until the last one has run (or one failed)."""
    page.goto(url)
    page.wait_for_function(KERNEL_READY, timeout=90_000)
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_function(ALL_RUN, timeout=timeout_s * 1000)
    failed = page.evaluate(ERRORS)
    assert not failed, failed


def _on_failure(page, name: str) -> None:
    """Keep what the page showed: a screenshot and any error output of a cell."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}-failure.png"), full_page=True)
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    print("cell errors:", [errors.nth(i).inner_text()[-800:] for i in range(errors.count())])


def _launch(p):
    return p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])


def test_tuner_in_jupyterlab(lab, tmp_path):
    from playwright.sync_api import sync_playwright

    url, _, crawl = lab
    with sync_playwright() as p:
        browser = _launch(p)
        page = browser.new_page(viewport={"width": 1280, "height": 1500})  # a laptop's browser window
        try:
            _run_all(page, url("02.ipynb"), 300)
            applied = page.locator(".jp-OutputArea-output .ltkit-applied")
            applied.wait_for(timeout=30_000)
            tuner = page.locator(".jp-OutputArea-output .ltkit-tuner")
            tuner.scroll_into_view_if_needed()
            layout = page.evaluate(LAYOUT)
            FIGURES.mkdir(exist_ok=True)
            FIGURES.mkdir(parents=True, exist_ok=True)
            tuner.screenshot(path=str(FIGURES / "tuner.png"))
            g1, g2 = (float(x) for x in page.evaluate(KERNEL_EVAL, "tuner.window.value").strip("()").split(","))
            histogram = page.locator(".jp-OutputArea-output .ltkit-histogram").get_attribute("src")
            # move the lower bound down 10 steps (0.01 each) with the keyboard, as a user would
            page.locator(".jp-OutputArea-output .noUi-handle-lower").focus()
            for _ in range(10):
                page.keyboard.press("ArrowLeft")
            want = f"γ1={g1 - 0.10:.2f} γ2={g2:.2f}"
            page.wait_for_function("(w) => [...document.querySelectorAll('.ltkit-applied')].some("
                                   "e => e.textContent.includes(w))", arg=want, timeout=30_000)
            page.wait_for_function("(old) => document.querySelector('.jp-OutputArea-output .ltkit-histogram').src "
                                   "!== old", arg=histogram, timeout=30_000)
            tuner.screenshot(path=str(FIGURES / "tuner_moved.png"))
            # click the first image of the strips: a manual override, written at once
            thumb = page.locator(".jp-OutputArea-output button.ltkit-thumb").first
            row = int(next(c for c in thumb.get_attribute("class").split() if re.fullmatch(r"ltkit-t\d+", c))[7:])
            kept_before = page.evaluate(KERNEL_EVAL, f"bool(tuner.decisions.keep[{row}])") == "True"
            thumb.click()
            page.locator(".jp-OutputArea-output .ltkit-status", has_text=re.compile(r"^override: ")).wait_for(timeout=30_000)
            key = page.evaluate(KERNEL_EVAL, f"tuner.scores.rows[{row}]['key']").strip("'")
            # pick the third class of the list (sorted by most affected) by typing its name in the search box
            option = page.locator(".jp-OutputArea-output .ltkit-classes select option").nth(2)
            name = " ".join(option.inner_text().split("·")[0].split())  # the list shows no-break spaces
            page.locator(".jp-OutputArea-output .ltkit-search input").fill(name)
            page.wait_for_function("(n) => [...document.querySelectorAll('.ltkit-class')].some("
                                   "e => e.textContent === n)", arg=name, timeout=30_000)
            page.locator(".jp-OutputArea-output button.ltkit-save").click()
            # the saved state exactly: the status before Save ("not saved yet: ...", "override: ...") never matches
            page.locator(".jp-OutputArea-output .ltkit-status", has_text=re.compile(r"^saved \d+ images")).wait_for(
                timeout=30_000)
            status = page.locator(".jp-OutputArea-output .ltkit-status").inner_text()
            kept_page = int(applied.locator(".ltkit-kept").inner_text())
            cls_kept_page = int(applied.locator(".ltkit-class-kept").inner_text())
            kernel = json.loads(page.evaluate(KERNEL_EVAL, "import json; json.dumps(tuner.counts())").strip("'"))
        except Exception:
            _on_failure(page, "tuner")
            print("applied:", [e.inner_text() for e in page.locator(".ltkit-applied").all()])
            raise
        finally:
            browser.close()
    # the layout holds at this width: the readout's text clears the toggle, the toggle is one row, nothing cut
    assert not _overlap(layout["readout"], layout["toggle"]), layout
    assert layout["toggle_rows"] == 1 and not layout["applied_cut"], layout
    assert layout["tuner"]["right"] <= 1280, layout
    saved = json.loads((crawl / "filter.json").read_text())
    assert saved["settings"]["gamma1"] == pytest.approx(g1 - 0.10) and saved["settings"]["gamma2"] == pytest.approx(g2)
    assert saved["saved_by"] == "tuner" and saved["kept"] == kept_page == kernel["kept"]
    assert cls_kept_page == kernel["cls_kept"] and kernel["cls"] is not None
    assert "replaced accepted.csv" in status and "Notebook 03 trains on accepted.csv" in status
    accepted = (crawl / "accepted.csv").read_text().splitlines()
    assert len(accepted) - 1 == kept_page
    manifest = [json.loads(x) for x in (crawl / "filter_manifest.jsonl").read_text().splitlines()]
    assert len(manifest) == saved["images"] == kernel["images"]
    # the click: one override line with who and when, applied in the saved set and counted apart
    (override,) = [json.loads(x) for x in (crawl / "overrides.jsonl").read_text().splitlines()]
    assert override["key"] == key and override["decision"] == ("drop" if kept_before else "keep")
    assert override["by"] and override["time"] and kernel["overrides"] == 1
    assert saved["overrides"]["keep"] + saved["overrides"]["drop"] == 1
    (hand,) = [r for r in manifest if "override" in r]
    assert hand["key"] == key and hand["keep"] == (not kept_before) and hand["override_by"] == override["by"]
    assert (FIGURES / "tuner.png").stat().st_size > 10_000 and (FIGURES / "tuner_moved.png").stat().st_size > 10_000


def test_notebook04_shows_every_figure_it_saves(lab, tmp_path):
    from playwright.sync_api import sync_playwright

    url, nb_dir, _ = lab
    saving = sum("save_figure(" in "".join(c["source"]) for c in json.loads((nb_dir / "04.ipynb").read_text())["cells"]
                 if c["cell_type"] == "code")
    with sync_playwright() as p:
        browser = _launch(p)
        page = browser.new_page(viewport={"width": 1280, "height": 1500})
        try:
            _run_all(page, url("04.ipynb"), 900)
            # the cells that save a figure, each with an image in its output
            shown = page.evaluate("""() => [...document.querySelectorAll('.jp-CodeCell')].filter(
                c => c.querySelector('.jp-InputArea').textContent.includes('save_figure(')).map(
                c => c.querySelectorAll('.jp-OutputArea-output img').length)""")
            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").count()
            page.locator(".jp-OutputArea-output img").nth(1).scroll_into_view_if_needed()  # the photo PCA figure
            FIGURES.mkdir(exist_ok=True)
            FIGURES.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(FIGURES / "notebook04.png"))
        except Exception:
            _on_failure(page, "notebook04")
            raise
        finally:
            browser.close()
    assert len(shown) == saving and all(n >= 1 for n in shown), shown
    assert errors == 0 and (FIGURES / "notebook04.png").stat().st_size > 10_000
