"""The MLflow dashboards of a suite, checked in a real headless browser.

A small suite runs into a temporary store; `relforge ui` serves it on
127.0.0.1; Debian's Chromium (driven by Selenium through Debian's
chromedriver) opens the experiment page, the compare-runs page and the
parent run's report artifacts, and saves screenshots. Skips with the reason
where no browser is installed (`.ci/run` installs one).
"""
from __future__ import annotations

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

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
selenium = pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[test]')")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="no browser: install Debian's chromium and chromium-driver "
                                       "(apt-get install chromium chromium-driver)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served_suite(tmp_path, tiny_bert_dir, monkeypatch):
    from relforge.bench.runner import run_suite
    from relforge.bench.suite import SuiteFile

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    spec = SuiteFile(name="dash", base={
        "data": {"dataset": {"name": "quickstart", "train_size": 16, "dev_size": 8, "test_size": 8}},
        "model": {"backbone": str(tiny_bert_dir), "max_source_length": 40},
        "train": {"epochs": 1, "batch_size": 8}, "tracking": {"experiment": "dashboard-test"}},
        matrix={"method": ["marker_classifier"], "seed": [1, 2]}, metrics=["test/micro_f1"])
    results = run_suite(spec, output_dir=tmp_path / "runs")
    assert [r.status for r in results] == ["FINISHED", "FINISHED"]
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "relforge", "ui", "--port", str(port), "--tracking-uri", uri],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            cwd=tmp_path)
    try:
        deadline = time.time() + 300
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                assert proc.poll() is None, "relforge ui exited"
                time.sleep(1)
        else:
            pytest.fail("the MLflow server did not answer within 300 s")
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name("dashboard-test")
        runs = client.search_runs([exp.experiment_id])
        yield {"base": f"http://127.0.0.1:{port}", "exp": exp.experiment_id, "runs": runs}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--window-size=1600,1000"):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


# scroll every scrollable element one screen further, so that lazily
# rendered sections (the compare page's metric table) are drawn
SCROLL = """document.querySelectorAll('*').forEach(e => {
  if (e.scrollHeight > e.clientHeight + 10) { e.scrollTop = e.scrollTop + e.clientHeight; } });"""


def wait_for_text(driver, texts, timeout=120, shot: Path | None = None):
    """Wait until every text has been shown, scrolling down as it waits;
    returns everything seen."""
    deadline = time.time() + timeout
    seen = ""
    while time.time() < deadline:
        seen += "\n" + driver.find_element("tag name", "body").text
        if all(t in seen for t in texts):
            return seen
        driver.execute_script(SCROLL)
        time.sleep(1)
    if shot is not None:
        driver.save_screenshot(str(shot))
    missing = [t for t in texts if t not in seen]
    raise AssertionError(f"not shown after {timeout} s: {missing} (screenshot: {shot})")


def click_text(driver, text, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = driver.find_elements("xpath", f"//*[normalize-space(text())='{text}']")
        if found:
            found[-1].click()
            return
        time.sleep(1)
    raise AssertionError(f"no element with text {text!r} to click")


def test_suite_runs_metrics_and_report_are_shown(served_suite, tmp_path):
    shots = Path(os.environ.get("RELFORGE_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    runs = served_suite["runs"]
    parent = next(r for r in runs if r.data.tags.get("relforge.role") == "suite")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2
    driver = browser()
    failed = shots / "dashboard-failure.png"
    try:
        base, exp = served_suite["base"], served_suite["exp"]
        # the experiment's runs: the suite's parent run, its children nested under it
        driver.get(f"{base}/#/experiments/{exp}/runs")
        wait_for_text(driver, ["dashboard-test", parent.info.run_name], shot=failed)
        driver.save_screenshot(str(shots / "dashboard-experiment.png"))
        # the compare view lines the child runs' metrics up
        ids = json.dumps([r.info.run_id for r in children])
        driver.get(f"{base}/#/compare-runs?runs={ids}&experiments={json.dumps([exp])}")
        body = wait_for_text(driver, [children[0].info.run_name, children[1].info.run_name, "test/micro_f1"],
                             shot=failed)
        for child in children:
            assert f"{child.data.metrics['test/micro_f1']:.3f}"[:4] in body
        driver.save_screenshot(str(shots / "dashboard-compare.png"))
        # the parent run's report artifacts
        driver.get(f"{base}/#/experiments/{exp}/runs/{parent.info.run_id}/artifacts")
        wait_for_text(driver, ["report"], shot=failed)
        click_text(driver, "report")
        wait_for_text(driver, ["report.md", "report.csv", "bar-test_micro_f1.png"], shot=failed)
        click_text(driver, "report.md")
        wait_for_text(driver, ["Suite dash", "marker_classifier"], shot=failed)
        driver.save_screenshot(str(shots / "dashboard-report.png"))
    finally:
        driver.quit()
    assert (shots / "dashboard-compare.png").stat().st_size > 10_000
