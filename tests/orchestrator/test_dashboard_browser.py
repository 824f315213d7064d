"""The dashboard in Debian's headless chromium (selenium + chromium-driver): log in, watch a local build become
ready, see the dependency graph, scale, and see the scaling decision; screenshots are kept as test artifacts."""

import os
import shutil
import subprocess
import textwrap
import time

import pytest

from tests.conftest import REPO

webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test needs selenium (pip install '.[test]')")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from tests.orchestrator.api_server import WRITE_TOKEN, Server, wait_operation  # noqa: E402

DOC = textwrap.dedent("""\
    tosca_definitions_version: tosca_simple_yaml_1_3
    topology_template:
      node_templates:
        model:
          type: strato.nodes.Job
          properties:
            command: ["{python}", "-c", "import time; time.sleep(3)"]
        server:
          type: strato.nodes.Process
          properties:
            command: ["{python}", "-c", "import time; time.sleep(600)"]
          capabilities: {scalable: {properties: {default_instances: 1}}}
          requirements: [{dependency: model}]
    """)


@pytest.fixture(scope="module")
def chromium():
    script = os.path.join(REPO, "tests", "env", "chromium.sh")
    proc = subprocess.run(["bash", script], capture_output=True, text=True, timeout=900)
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if proc.returncode != 0 or not binary or not driver:
        pytest.skip(f"Debian's chromium and chromium-driver could not be installed: {proc.stderr.strip()[-300:]}")
    return binary, driver


@pytest.fixture
def browser(chromium):
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = chromium[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-dev-shm-usage", "--window-size=1300,1400"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=chromium[1]), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def artifacts(tmp_path):
    path = os.environ.get("STRATO_TEST_ARTIFACTS") or str(tmp_path / "artifacts")
    os.makedirs(path, exist_ok=True)
    return path


@pytest.mark.e2e
def test_dashboard_login_build_graph_scale(strato_home, browser, artifacts):
    server = Server(strato_home, "--allow-local-processes").start()
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    wait = WebDriverWait(browser, 90, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))
    try:
        browser.get(server.url + "/")
        wait.until(EC.visibility_of_element_located((By.ID, "token"))).send_keys("wrong-token-" + "x" * 20)
        browser.find_element(By.ID, "login-button").click()
        wait.until(EC.text_to_be_present_in_element((By.ID, "login-error"), "refused"))
        token = browser.find_element(By.ID, "token")
        token.clear()
        token.send_keys(WRITE_TOKEN)
        browser.find_element(By.ID, "login-button").click()
        wait.until(EC.visibility_of_element_located((By.ID, "app")))
        assert not browser.find_element(By.ID, "login").is_displayed()
        with server.client() as client:
            op_id = client.post("/v1/infrastructures", json={"name": "shop", "descriptor": DOC}).json()["operation"]
            # the list and the node select are redrawn every few seconds: find and act in one retried step
            wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#infra-list li[data-name='shop']").click() or True)
            # progress shows while it runs (on a loaded machine the page may first see it finished)
            wait.until(lambda d: d.find_element(By.ID, "op-state").text in ("running", "succeeded"))
            browser.save_screenshot(os.path.join(artifacts, "1-building.png"))
            wait.until(EC.text_to_be_present_in_element((By.ID, "op-state"), "succeeded"))
            assert wait_operation(client, op_id)["state"] == "succeeded"
            wait.until(EC.text_to_be_present_in_element((By.ID, "infra-status"), "ready"))
            nodes = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#graph-svg g.node")
                               if len(d.find_elements(By.CSS_SELECTOR, "#graph-svg g.node")) == 2 else False)
            assert {n.get_attribute("data-node") for n in nodes} == {"model", "server"}
            assert len(browser.find_elements(By.CSS_SELECTOR, "#graph-svg line.edge")) == 1
            browser.save_screenshot(os.path.join(artifacts, "2-ready.png"))

            from selenium.webdriver.support.ui import Select
            wait.until(lambda d: Select(d.find_element(By.ID, "scale-node")).select_by_value("server") or
                       d.find_element(By.ID, "scale-node").get_attribute("value") == "server")
            count = browser.find_element(By.ID, "scale-to")
            count.clear()
            count.send_keys("3")
            browser.find_element(By.ID, "scale-button").click()
            wait.until(EC.text_to_be_present_in_element((By.ID, "scale-result"), "to 3"))
            wait.until(lambda d: len([r for r in d.find_elements(By.CSS_SELECTOR, "#instances tr.instance")
                                      if "server" in r.text and "ready" in r.text]) == 3)
            wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#timeline-svg g.decision")))
            assert browser.find_elements(By.CSS_SELECTOR, "#timeline-svg path.series[data-node='server']")
            time.sleep(0.5)
            browser.save_screenshot(os.path.join(artifacts, "3-scaled.png"))
            op = client.delete("/v1/infrastructures/shop").json()["operation"]
            assert wait_operation(client, op)["state"] == "succeeded"
    finally:
        server.stop()
    print(f"screenshots in {artifacts}")


def key(i: int) -> str:
    return f"shop/server/{i}@u1"


# A known journal: two replicas, a manual scale to 3, server[1] healed twice (its process died), a policy's scale
# to 2 (journaled with `desired`, not `count`), server[2] deleted.
KNOWN = [
    (1, "create_started", key(0), {"reason": "new instance"}), (2, "ready", key(0), {}),
    (3, "create_started", key(1), {"reason": "new instance"}), (4, "ready", key(1), {}),
    (5, "scaled", None, {"node": "server", "count": 3, "force": False}),
    (6, "create_started", key(2), {"reason": "new instance"}), (7, "ready", key(2), {}),
    (8, "create_started", key(1), {"reason": "its process/resource is gone"}), (9, "ready", key(1), {}),
    (10, "create_started", key(1), {"reason": "its process/resource is gone"}), (11, "ready", key(1), {}),
    (12, "scaled", None, {"node": "server", "desired": 2, "direction": "down", "policy": "cpu", "from": 3,
                          "reason": "cpu below target"}),
    (13, "delete_started", key(2), {}), (14, "deleted", key(2), {}),
]


@pytest.mark.e2e
def test_scaling_timeline_draws_the_instance_history(strato_home, browser):
    """The timeline against a known sequence: counts follow the live instances (heals add none: 1,2,3,2, not
    1,2,3,4,5,4), each heal is its own mark, and a policy's decision reads →2 (it read →undefined)."""
    server = Server(strato_home).start()
    try:
        browser.get(server.url + "/")
        wait = WebDriverWait(browser, 30)
        wait.until(EC.visibility_of_element_located((By.ID, "token"))).send_keys(WRITE_TOKEN)
        browser.find_element(By.ID, "login-button").click()
        wait.until(EC.visibility_of_element_located((By.ID, "app")))
        events = [{"id": i, "ts": 1_700_000_000 + ts, "kind": kind, "key": k, "detail": detail}
                  for i, (ts, kind, k, detail) in enumerate(KNOWN, 1)]
        model = browser.execute_script("return timelineModel(arguments[0])", events)
        assert [c for _, c in model["series"]["server"]] == [1, 2, 3, 2]
        assert [(h["kind"], h["key"]) for h in model["heals"]] == [("heal", key(1))] * 2
        assert [d["count"] for d in model["decisions"]] == [3, 2]
        browser.execute_script("state.events = arguments[0]; drawTimeline();", events)
        path = browser.find_element(By.CSS_SELECTOR, "#timeline-svg path.series[data-node='server']")
        assert path.get_attribute("data-counts") == "1,2,3,2"
        assert len(browser.find_elements(By.CSS_SELECTOR, "#timeline-svg g.heal[data-node='server']")) == 2
        marks = browser.find_elements(By.CSS_SELECTOR, "#timeline-svg g.decision text")
        labels = [m.get_attribute("textContent") for m in marks]  # the card is hidden: no infrastructure chosen
        assert labels == ["server →3", "server →2"], labels
        assert "undefined" not in browser.find_element(By.ID, "timeline").get_attribute("innerHTML")
    finally:
        server.stop()


HEALED = textwrap.dedent("""\
    tosca_definitions_version: tosca_simple_yaml_1_3
    topology_template:
      node_templates:
        server:
          type: strato.nodes.Process
          properties:
            command: ["{python}", "-c", "import time; time.sleep(600)"]
          capabilities: {scalable: {properties: {default_instances: 2}}}
    """)


@pytest.mark.e2e
def test_a_real_heal_is_a_mark_not_another_instance(strato_home, browser):
    """A replica killed under `strato serve --maintain` is healed by the loop; the timeline still shows 2 instances
    and one heal mark (each heal drew one more instance: 3 where 2 existed)."""
    import signal
    server = Server(strato_home, "--allow-local-processes", "--maintain", "--maintain-interval", "1s").start()
    try:
        with server.client() as client:
            op = client.post("/v1/infrastructures", json={"name": "shop", "descriptor": HEALED}).json()["operation"]
            assert wait_operation(client, op, 90)["state"] == "succeeded"
            victim = client.get("/v1/infrastructures/shop").json()["instances"][0]
            os.kill(victim["attributes"]["pid"], signal.SIGKILL)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                events = client.get("/v1/infrastructures/shop/events?follow=false").text
                # create_started and ready of the first build, then again for the heal
                if events.count(f"\"{victim['key']}\"") >= 4 and events.count("event: ready") >= 3:
                    break
                time.sleep(0.5)
            else:
                raise AssertionError("the killed replica was not healed in 60 s")
        browser.get(server.url + "/")
        wait = WebDriverWait(browser, 60)
        wait.until(EC.visibility_of_element_located((By.ID, "token"))).send_keys(WRITE_TOKEN)
        browser.find_element(By.ID, "login-button").click()
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#infra-list li[data-name='shop']").click() or True)
        path = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#timeline-svg path.series[data-node='server']"))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#timeline-svg g.heal[data-node='server']"))
        assert path.get_attribute("data-counts").split(",")[-1] == "2"
        assert max(map(int, path.get_attribute("data-counts").split(","))) == 2
    finally:
        server.stop()
