"""The HTML report in a real browser: Debian's headless Chromium driven by selenium.

No skipping: without /usr/bin/chromium and /usr/bin/chromedriver these tests fail (.ci/run
installs both). The page comes from one random-weights run of two models.
"""

import copy
import json
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs

import pytest
from conftest import load_run, run_cli
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from vision_bench.reports.html import html_report
from vision_bench.reports.markdown import draw_summary_charts, markdown_report

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INJECTED = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def run(tmp_path_factory, sample_image):
    out = tmp_path_factory.mktemp("html_run")
    proc = run_cli(
        "--weights",
        "random",
        "--models",
        "yolo11n-detect,depth-anything-v2-small",
        "--runs",
        "2",
        "--images",
        sample_image,
        "--output-dir",
        out,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    loaded = load_run(out)
    loaded["html_path"] = loaded["results_dir"] / f"benchmark_report_{loaded['run_id']}.html"
    assert loaded["html_path"].is_file()
    return loaded


@pytest.fixture(scope="module")
def browser():
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            pytest.fail(f"{path} is missing: apt-get install -y chromium chromium-driver (.ci/run does it)")
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # Without the background-networking flags Chromium waits on refused connections here.
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1400,900",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_window_size(1400, 900)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def open_page(driver, path: Path, fragment: str = ""):
    driver.get("about:blank")
    driver.get_log("browser"), driver.get_log("performance")  # start each page with empty logs
    driver.get(path.as_uri() + fragment)
    WebDriverWait(driver, 20).until(lambda d: d.execute_script("return document.readyState") == "complete")


def page_log(driver) -> tuple[list[str], list[str]]:
    """Console errors and failed requests, and every URL requested, since the last open_page."""
    problems = [f"console: {e['message']}" for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.loadingFailed":
            problems.append(f"request failed: {message['params']}")
        elif message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return problems, urls


def explorer(driver, model: str):
    """The model's layer explorer, its fold ("Inside the model") opened as a reader would: a click on its title."""
    for root in driver.find_elements(By.CSS_SELECTOR, ".explorer"):
        section = root.find_element(By.XPATH, "./ancestor::section")
        if section.find_element(By.TAG_NAME, "h2").text == model:
            fold = root.find_element(By.XPATH, "./ancestor::details")
            if fold.get_attribute("open") is None:
                summary = fold.find_element(By.TAG_NAME, "summary")
                driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", summary)
                summary.click()
            return root
    raise AssertionError(f"no explorer for {model}")


def selected_index(root) -> int:
    return int(root.find_element(By.CSS_SELECTOR, "tbody tr.selected").get_attribute("data-index"))


def fragment(driver) -> dict:
    return {k: v[0] for k, v in parse_qs(driver.current_url.partition("#")[2]).items()}


def wait_image(driver, root):
    img = root.find_element(By.CSS_SELECTOR, ".ex-detail img")
    WebDriverWait(driver, 10).until(lambda d: d.execute_script("return arguments[0].complete", img))
    return img


def test_page_loads_offline_without_errors_and_only_selected_images(run, browser):
    open_page(browser, run["html_path"])
    time.sleep(0.5)
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])"
    )
    assert images, "the page shows no pictures"
    assert all(complete and width > 0 for _, complete, width in images), images
    problems, urls = page_log(browser)
    assert problems == []
    assert all(url.startswith("file://") or url.startswith("data:") for url in urls), urls  # offline
    # Charts and output pictures, plus one layer picture per explorer: never every layer's PNG.
    layer_requests = [url for url in urls if "/viz/" in url]
    assert len(layer_requests) == len(run["json"]["models"]) == 2, layer_requests
    layer_pngs = [src for src, _, _ in images if "/viz/" in src]
    assert len(layer_pngs) == 2 and all(src.startswith("../viz/") for src in layer_pngs), layer_pngs
    assert any(src.startswith(f"report_{run['run_id']}/") for src, _, _ in images), images
    text = browser.find_element(By.TAG_NAME, "body").text
    assert "Warning: random weights." in text


def test_the_verdict_comes_first_and_the_model_parts_fold_and_unfold(run, browser):
    open_page(browser, run["html_path"])
    headings = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "main h2")]
    assert headings[:2] == ["Verdict", "Summary"] and headings[-3:] == [
        "System",
        "Configuration",
        "Where the files are",
    ]
    verdict = browser.find_element(By.CSS_SELECTOR, "#verdict + ul").text
    assert "Run complete. 2 of 2 models complete; took" in verdict and "Fastest:" in verdict
    section = browser.find_element(By.ID, "model-0")
    facts = section.find_element(By.CSS_SELECTOR, "h2 + ul")
    assert facts.is_displayed() and "Timed medians" in facts.text  # the headline figures stay in view
    folds = section.find_elements(By.CSS_SELECTOR, "details.fold")
    titles = [f.find_element(By.TAG_NAME, "summary").text for f in folds]
    assert titles[0] == "Per image" and "Inside the model" in titles
    table = folds[0].find_element(By.TAG_NAME, "table")
    assert not table.is_displayed()  # folded at first
    summary = folds[0].find_element(By.TAG_NAME, "summary")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", summary)
    summary.click()
    assert table.is_displayed() and run["json"]["images"][0].rpartition("/")[2] in table.text
    summary.click()
    assert not table.is_displayed()
    assert page_log(browser)[0] == []


def test_summary_has_a_row_per_model_and_sorts_by_header(run, browser):
    open_page(browser, run["html_path"])
    table = browser.find_element(By.CSS_SELECTOR, "#summary + div table.sortable")

    def names():
        return [
            row.find_elements(By.TAG_NAME, "td")[0].text for row in table.find_elements(By.CSS_SELECTOR, "tbody tr")
        ]

    expected = [m["model"] for m in run["json"]["models"]]
    assert names() == expected == ["YOLO11nDetect", "DepthAnythingV2Small"]
    header = {th.text.split("\n")[0]: th for th in table.find_elements(By.TAG_NAME, "th")}
    header["model"].click()
    assert names() == sorted(expected)
    header["model"].click()
    assert names() == sorted(expected, reverse=True)
    header["params"].click()  # numeric: by parameter count, not by the text "24,785,089"
    by_params = sorted(run["json"]["models"], key=lambda m: m["parameters"])
    assert names() == [m["model"] for m in by_params]


def test_explorer_filters_by_type_and_by_name(run, browser):
    open_page(browser, run["html_path"])
    root = explorer(browser, "YOLO11nDetect")
    counts = run["json"]["models"][0]["dissection"]["type_counts"]
    Select(root.find_element(By.TAG_NAME, "select")).select_by_value("SiLU")
    visible = [r for r in root.find_elements(By.CSS_SELECTOR, "tbody tr") if r.is_displayed()]
    assert len(visible) == counts["SiLU"] > 0
    assert {r.find_elements(By.TAG_NAME, "td")[3].text for r in visible} == {"SiLU"}
    Select(root.find_element(By.TAG_NAME, "select")).select_by_value("")
    root.find_element(By.CSS_SELECTOR, "input[type=search]").send_keys("model.23.")
    visible = [r for r in root.find_elements(By.CSS_SELECTOR, "tbody tr") if r.is_displayed()]
    assert visible and all(r.find_elements(By.TAG_NAME, "td")[1].text.startswith("model.23.") for r in visible)
    assert len(visible) < counts["Conv2d"]


def test_selecting_a_record_shows_its_png_and_arrow_keys_step(run, browser):
    open_page(browser, run["html_path"])
    root = explorer(browser, "DepthAnythingV2Small")
    rows = root.find_elements(By.CSS_SELECTOR, "tbody tr")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", rows[3])
    rows[3].click()
    assert selected_index(root) == 3
    img = wait_image(browser, root)
    assert img.get_attribute("src").endswith("/DepthAnythingV2Small/layer_003.png")
    assert browser.execute_script("return arguments[0].naturalWidth", img) > 0
    detail = root.find_element(By.CSS_SELECTOR, ".ex-detail").text
    assert "backbone.encoder.layer.0.attention.q_proj" in detail and "1 x 1037 x 384" in detail
    assert "tokens reshaped to" in detail  # the shape after the token reshape
    links = [a.get_attribute("href") for a in root.find_elements(By.CSS_SELECTOR, "a.ex-file")]
    assert [Path(h).name for h in links] == ["layer_003.png", "layer_003.npy"]
    assert fragment(browser) == {"model": "DepthAnythingV2Small", "record": "3"}

    browser.switch_to.active_element.send_keys(Keys.ARROW_DOWN)
    assert selected_index(root) == 4
    assert wait_image(browser, root).get_attribute("src").endswith("layer_004.png")
    browser.switch_to.active_element.send_keys(Keys.ARROW_UP, Keys.ARROW_UP)
    assert selected_index(root) == 2
    assert fragment(browser)["record"] == "2"
    assert page_log(browser)[0] == []


def test_clicking_a_profile_point_selects_its_record_and_marks_it(run, browser):
    open_page(browser, run["html_path"])
    root = explorer(browser, "YOLO11nDetect")
    point = root.find_element(By.CSS_SELECTOR, "svg.ex-profile circle.pt[data-index='40']")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", point)
    browser.execute_script("arguments[0].dispatchEvent(new MouseEvent('click', {bubbles: true}))", point)
    assert selected_index(root) == 40
    marker = root.find_element(By.CSS_SELECTOR, "svg.ex-profile line.sel")
    assert float(marker.get_attribute("x1")) == pytest.approx(float(point.get_attribute("cx")))
    point = root.find_element(By.CSS_SELECTOR, "svg.ex-profile circle.pt[data-index='120']")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", point)
    webdriver.ActionChains(browser).move_to_element(point).click().perform()  # a real pointer click
    assert selected_index(root) == 120
    assert float(marker.get_attribute("x1")) == pytest.approx(float(point.get_attribute("cx")))


def test_url_fragment_restores_model_and_record_on_reload(run, browser):
    open_page(browser, run["html_path"], "#model=DepthAnythingV2Small&record=17")
    root = explorer(browser, "DepthAnythingV2Small")
    assert selected_index(root) == 17
    assert selected_index(explorer(browser, "YOLO11nDetect")) == 0  # the other explorer untouched
    rows = root.find_elements(By.CSS_SELECTOR, "tbody tr")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", rows[25])
    rows[25].click()
    browser.refresh()
    WebDriverWait(browser, 20).until(lambda d: d.execute_script("return document.readyState") == "complete")
    root = explorer(browser, "DepthAnythingV2Small")
    assert selected_index(root) == 25
    assert root.find_element(By.CSS_SELECTOR, ".ex-detail h4").text.startswith("#25 ")
    assert wait_image(browser, root).get_attribute("src").endswith("layer_025.png")


def test_names_with_markup_render_as_text(run, browser, ub, tmp_path):
    """A model, a module and an error message carrying markup: shown literally, nothing runs."""
    data = copy.deepcopy(run["json"])
    good, failed = data["models"]
    good["model"] = f"Evil{INJECTED}"
    meta = json.loads((Path(good["dissection"]["folder"]) / "layers_metadata.json").read_text())
    records = list(meta["records"].values())[:3]
    records[0]["name"] = f"backbone.{INJECTED}"
    records[1]["name"] = "x.</script><script>window.pwned=1</script><!--<script>"
    records[2]["type"] = '<img src=x onerror="window.pwned=2">'
    folder = tmp_path / "viz" / "evil"
    folder.mkdir(parents=True)
    (folder / "layers_metadata.json").write_text(json.dumps({"records": {str(r["index"]): r for r in records}}))
    good["dissection"]["folder"] = str(folder)
    failed.update(
        status="failed",
        error={
            "type": "OutOfMemoryError",
            "phase": "inference",
            "message": '<img src=x onerror="window.pwned=3"> out of memory',
        },
        memory={"cpu_rss_before_load_bytes": 2**30, "at_failure": {"cpu_peak_rss_bytes": 5 * 2**30}},
    )
    data["status"] = "incomplete"  # a run with a failed model (a run has no status "failed")
    for model in data["models"]:
        model.pop("output_image", None)  # pictures live in the real run's folder, not here
    results = tmp_path / "results"
    ctx = SimpleNamespace(
        run_id=data["run_id"],
        results_dir=results,
        viz_dir=tmp_path / "viz",
        assets_dir=results / f"report_{data['run_id']}",
    )
    ctx.assets_dir.mkdir(parents=True)
    page = html_report(data, ctx)
    assert INJECTED not in page and "</script><script>window" not in page
    path = results / "evil.html"
    path.write_text(page, encoding="utf-8")

    open_page(browser, path)
    with pytest.raises(NoAlertPresentException):
        _ = browser.switch_to.alert.text
    assert browser.execute_script("return window.pwned") is None
    assert INJECTED in browser.find_element(By.CSS_SELECTOR, "section h2").text
    browser.execute_script("document.querySelectorAll('details.fold').forEach(d => { d.open = true; })")
    root = browser.find_element(By.CSS_SELECTOR, ".explorer")
    names = [r.find_elements(By.TAG_NAME, "td")[1].text for r in root.find_elements(By.CSS_SELECTOR, "tbody tr")]
    assert names[0] == f"backbone.{INJECTED}" and names[1].endswith("<!--<script>")
    assert "onerror" in root.find_elements(By.CSS_SELECTOR, "tbody tr")[2].text
    failure = browser.find_element(By.CSS_SELECTOR, ".fail").text
    assert "OutOfMemoryError" in failure and 'onerror="window.pwned=3"' in failure
    assert "peak at failure 5.00 GB" in failure
    # The crafted records' layer pictures do not exist; any other console error (a broken script) counts.
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and "/layer_" not in e["message"]]


def test_run_in_progress_and_new_result_fields_are_shown(run, ub, tmp_path):
    """A page written mid-run shows the finished models and says the run goes on; warm-up runs,
    95% intervals, phase times and a worker's last output appear when the result JSON has them."""
    data = copy.deepcopy(run["json"])
    done, running = data["models"]
    data["status"] = "running"
    running.clear()
    running.update(model="DepthAnythingV2Small", cli_name="depth-anything-v2-small", status="running", weights="random")
    done["runs"] = [{**r, "kind": kind} for r, kind in zip(done["runs"] * 3, ("cold", "warmup", "warmup", "timed"))]
    done["latency_end_to_end"].update(ci95_low=0.0123, ci95_high=0.0456, ci_method="order statistics")
    done["phase_seconds"] = {"load": 1.25, "timed": 3.5}
    data["phase_totals"] = {"load": 1.25, "timed": 3.5, "measuring": 4.75, "overhead": 0.75, "wall": 5.5}
    data["models"].append(
        {
            "model": "MobileSAM",
            "status": "timeout",
            "weights": "random",
            "runs": [],
            "error": {"type": "Timeout", "message": "worker killed", "output_tail": ["line one", "line two"]},
        }
    )
    results = tmp_path / "results"
    ctx = SimpleNamespace(
        run_id=data["run_id"],
        results_dir=results,
        viz_dir=tmp_path / "viz",
        assets_dir=results / f"report_{data['run_id']}",
    )
    page = html_report(data, ctx)
    assert "<b>Run running.</b> 1 of 3 models complete; " in page  # the verdict, in the tense of a running run
    assert " s so far; running now: DepthAnythingV2Small (this report is rewritten" in page
    assert page.count("<section ") == 1 and '<section id="model-0"><h2>YOLO11nDetect</h2>' in page
    assert "Runs: 1 cold start, 2 warm-up (not in the statistics), 1 timed" in page
    assert "[12.3, 45.6]" in page  # the interval as the Markdown writes it
    assert "Wall time by phase: load 1.2 s, timed runs 3.5 s" in page and "Where the run&#x27;s time went" in page
    assert "<td>MobileSAM</td><td>timeout</td>" in page.split('<div class="fail">')[1] and "line one\nline two" in page


def test_summary_charts_are_drawn_once_when_the_run_ends(run, ub, tmp_path):
    """Mid-run writes skip the summary charts (they were the parent's largest per-model cost);
    the final write draws them (write_reports, before the wall time is stamped) and both reports show them."""
    data = copy.deepcopy(run["json"])
    results = tmp_path / "results"
    ctx = SimpleNamespace(
        run_id=data["run_id"],
        results_dir=results,
        viz_dir=tmp_path / "viz",
        assets_dir=results / f"report_{data['run_id']}",
    )
    ctx.assets_dir.mkdir(parents=True)
    data["status"] = "running"
    md = markdown_report(data, ctx)
    assert "No charts yet: they are drawn when the run ends." in md and not (ctx.assets_dir / "latency.png").exists()
    assert "No charts yet: they are drawn when the run ends." in html_report(data, ctx)
    data["status"] = "complete"
    draw_summary_charts(data, ctx.assets_dir)  # the final write draws them before it stamps the wall time
    md = markdown_report(data, ctx)
    assert (ctx.assets_dir / "latency.png").exists() and (ctx.assets_dir / "memory_vs_params.png").exists()
    assert f"]({ctx.assets_dir.name}/latency.png)" in md and "No charts yet" not in md
    assert 'alt="Latency per model"' in html_report(data, ctx)
