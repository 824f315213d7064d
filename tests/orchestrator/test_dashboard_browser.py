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
