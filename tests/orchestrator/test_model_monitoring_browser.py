"""The dashboard's model monitoring card in Debian's headless chromium: a real model server's windows, drifted
after a shift, drawn per feature with the alarm state."""

import os

import pytest

from tests.orchestrator.test_dashboard_browser import artifacts, browser, chromium  # noqa: F401 - fixtures
from tests.orchestrator.test_model_monitoring import IRIS, FeatureStream, ml, parse_shift, send, server_url  # noqa: F401

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from tests.orchestrator.api_server import WRITE_TOKEN, Server  # noqa: E402


@pytest.mark.e2e
def test_dashboard_draws_each_features_drift_and_the_alarm(ml, strato_home, browser, artifacts):  # noqa: F811
    build, store, _ = ml
    maintainer = build()
    url = server_url(store)
    send(url, FeatureStream(IRIS, seed=1), 100)
    send(url, FeatureStream(IRIS, [parse_shift("petal_length:+2")], shift_at=0.0, seed=2), 200)
    maintainer.run_pass()
    server = Server(strato_home).start()
    wait = WebDriverWait(browser, 60)
    try:
        browser.get(server.url + "/")
        wait.until(EC.visibility_of_element_located((By.ID, "token"))).send_keys(WRITE_TOKEN)
        browser.find_element(By.ID, "login-button").click()
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#infra-list li[data-name='ml']").click() or True)
        wait.until(EC.visibility_of_element_located((By.ID, "models")))
        wait.until(EC.text_to_be_present_in_element((By.ID, "models-charts"), "drift FIRING"))
        dots = browser.find_elements(By.CSS_SELECTOR, "#models-charts circle")
        assert len(dots) == 3 * 5        # three windows, four features and the prediction
        assert any(d.get_attribute("fill") == "#b00020" for d in dots)   # the drifted windows
        # the rollouts card: the server's pinned stable version (no rollout under way)
        wait.until(EC.visibility_of_element_located((By.ID, "rollouts")))
        pinned = browser.find_element(By.CSS_SELECTOR, "#rollouts-list .rollout[data-node='server']").text
        assert pinned.startswith("server: iris:1"), pinned
        browser.save_screenshot(os.path.join(artifacts, "model-monitoring.png"))
    finally:
        server.stop()
