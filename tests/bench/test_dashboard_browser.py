"""The MLflow dashboards of a suite, checked in a real headless browser.

A small two-arm suite (two seeds per arm, a named baseline) runs into a
temporary store; `relforge ui` serves it on 127.0.0.1; Debian's Chromium
(driven by Selenium through Debian's chromedriver) opens, as a user would:
the experiment page with the suite's children expanded and their test metric
and coordinates as columns, the parent run's metrics (the paired
comparison's delta, CI and p), the parent's report artifact with the
comparison table, and the compare-runs page with the arms' test metric; it
saves a screenshot of each. Skips with the reason where no browser is
installed (`.ci/run` installs one).

The same checks run against a real suite's store, and retake the committed
screenshots::

    RELFORGE_DASHBOARD_URI=sqlite:///runs/mlflow.db RELFORGE_DASHBOARD_EXPERIMENT=seeds3-wiki80-8shot \
    RELFORGE_DASHBOARD_METRIC=test/micro_f1 RELFORGE_SCREENSHOT_DIR=benchmarks/results/dashboard \
        pytest tests/bench/test_dashboard_browser.py
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


def serve(uri: str, cwd: Path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "relforge", "ui", "--port", str(port), "--tracking-uri", uri],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, cwd=cwd)
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return proc, f"http://127.0.0.1:{port}"
        except OSError:
            if proc.poll() is not None:
                pytest.fail("relforge ui exited")
            time.sleep(1)
    os.killpg(proc.pid, signal.SIGTERM)
    pytest.fail("the MLflow server did not answer within 300 s")


@pytest.fixture
def served_suite(tmp_path, tiny_bert_dir, monkeypatch):
    uri = os.environ.get("RELFORGE_DASHBOARD_URI")
    name = os.environ.get("RELFORGE_DASHBOARD_EXPERIMENT", "dashboard-test")
    metric = os.environ.get("RELFORGE_DASHBOARD_METRIC", "test/micro_f1")
    if not uri:
        from relforge.bench.runner import run_suite
        from relforge.bench.suite import SuiteFile

        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        spec = SuiteFile(name="dash", base={
            "data": {"dataset": {"name": "quickstart", "train_size": 16, "dev_size": 8, "test_size": 16}},
            "model": {"backbone": str(tiny_bert_dir), "max_source_length": 40},
            "train": {"epochs": 1, "batch_size": 8}, "tracking": {"experiment": name}},
            matrix={"method": ["marker_classifier", "generative_ce"], "seed": [1, 2]}, metrics=[metric],
            compare={"baseline": {"method": "generative_ce"}})
        results = run_suite(spec, output_dir=tmp_path / "runs")
        assert [r.status for r in results] == ["FINISHED"] * 4
    proc, base = serve(uri, tmp_path)
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name(name)
        assert exp is not None, f"no experiment {name!r} in {uri}"
        runs = client.search_runs([exp.experiment_id])
        yield {"base": base, "exp": exp.experiment_id, "runs": runs, "metric": metric}
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
                 "--disable-sync", "--window-size=1800,1000"):
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


def close_assistant(driver):
    """MLflow 3 opens its assistant panel beside the runs; a user closes it."""
    for button in driver.find_elements("css selector", "button[aria-label='Close']"):
        if button.is_displayed():
            button.click()
            time.sleep(1)


def shown(value: float, body: str) -> bool:
    """Whether the page shows ``value`` (to the UI's rounding: 0, 0.1538...,
    1.2e-3 ...)."""
    import re

    numbers = [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", body)]
    return any(abs(x - value) <= 5e-3 * max(1.0, abs(value)) for x in numbers)


def test_suite_comparison_is_answered_by_the_dashboard(served_suite, tmp_path):
    from selenium.webdriver.common.keys import Keys

    shots = Path(os.environ.get("RELFORGE_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    runs, metric = served_suite["runs"], served_suite["metric"]
    # a suite run in shards has one parent per shard; the report's comparison is logged on one of them
    parents = [r for r in runs if r.data.tags.get("relforge.role") == "suite"]
    parent = next((r for r in parents if any(k.startswith("compare/") for k in r.data.metrics)), parents[0])
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) >= 3
    coords = sorted({k for c in children for k in c.data.tags if k.startswith("cell.")})
    arm_keys = [k for k in coords if k != "cell.seed"]
    compare = {k: v for k, v in parent.data.metrics.items() if k.startswith("compare/")}
    assert any(k.endswith("_delta") for k in compare) and any(k.endswith("_p") for k in compare)
    driver = browser()
    failed = shots / "dashboard-failure.png"
    try:
        base, exp = served_suite["base"], served_suite["exp"]
        # 1. the experiment's runs: expand the suite's parent run, show the
        # test metric and the cells' coordinates as columns
        driver.get(f"{base}/#/experiments/{exp}/runs")
        wait_for_text(driver, [parent.info.run_name], shot=failed)
        close_assistant(driver)
        link = driver.find_element("css selector", f"a[href$='/runs/{parent.info.run_id}']")
        link.find_element("xpath", "../..").find_element("tag name", "button").click()
        wait_for_text(driver, [c.info.run_name for c in children[:2]], shot=failed)
        driver.find_element("css selector", "[data-testid='column-selection-dropdown']").click()
        for label in [metric, *coords]:
            click_text(driver, label)
            time.sleep(0.5)
        driver.find_element("tag name", "body").send_keys(Keys.ESCAPE)
        time.sleep(2)
        body = wait_for_text(driver, [metric, *coords, *(c.info.run_name for c in children)], shot=failed)
        for child in children:
            assert shown(child.data.metrics[metric], body)
            for key in arm_keys:
                assert child.data.tags[key] in body
        driver.save_screenshot(str(shots / "dashboard-experiment.png"))
        # 2. the parent run's own metrics: the comparison's delta, CI and p
        driver.get(f"{base}/#/experiments/{exp}/runs/{parent.info.run_id}")
        names = sorted(compare)
        body = wait_for_text(driver, names[:4], shot=failed)
        for name in names[:4]:
            assert shown(compare[name], body)
        driver.save_screenshot(str(shots / "dashboard-parent-metrics.png"))
        # 3. the parent run's report artifact, with the comparison table
        driver.get(f"{base}/#/experiments/{exp}/runs/{parent.info.run_id}/artifacts")
        wait_for_text(driver, ["report"], shot=failed)
        click_text(driver, "report")
        wait_for_text(driver, ["report.md", "report.csv", "comparisons.csv", "forest.png"], shot=failed)
        click_text(driver, "report.md")
        wait_for_text(driver, ["Paired comparisons", "95% CI (examples)", "baseline"], shot=failed)
        driver.save_screenshot(str(shots / "dashboard-report.png"))
        # 4. the compare-runs page: every cell's test metric side by side, and
        # a box plot of the test metric per arm (the seeds' spread)
        ids = json.dumps([r.info.run_id for r in children])
        url = f"{base}/#/compare-runs?runs={ids}&experiments={json.dumps([exp])}"
        driver.get(url)
        body = wait_for_text(driver, [c.info.run_name for c in children] + [metric], shot=failed)
        for child in children:
            assert shown(child.data.metrics[metric], body)
        driver.get(f"{base}/#/experiments/{exp}/runs")  # a fresh page, scrolled to the top
        driver.get(url)
        wait_for_text(driver, ["Box Plot"], shot=failed)
        close_assistant(driver)
        click_text(driver, "Box Plot")
        arm_param = arm_keys[0].removeprefix("cell.")
        for axis, label in (("x", arm_param), ("y", metric)):
            driver.find_element("css selector", f"#{axis}-axis-selector").click()
            time.sleep(1)
            click_text(driver, label)
            time.sleep(1)
        wait_for_text(driver, sorted({c.data.tags[arm_keys[0]] for c in children}), shot=failed)
        time.sleep(2)
        driver.save_screenshot(str(shots / "dashboard-compare.png"))
    finally:
        driver.quit()
    for name in ("experiment", "parent-metrics", "report", "compare"):
        assert (shots / f"dashboard-{name}.png").stat().st_size > 10_000
