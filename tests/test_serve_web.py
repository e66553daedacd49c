"""The web demo in a real headless Chromium: open the page, upload an image, ask in Korean, then
in English, read the streamed answers, save a screenshot. Skips (with the reason) where Chromium,
its driver or selenium is missing; Debian: `apt-get install chromium chromium-driver`."""

from __future__ import annotations

import shutil

import pytest

from tests.serve_util import model_dir_of, running_server, world_images

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")

BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    BROWSER is None or DRIVER is None,
    reason="headless Chromium not found (Debian: apt-get install -y chromium chromium-driver)",
)


@pytest.fixture(scope="module")
def base(fast_run):
    with running_server(model_dir_of(fast_run), api_key="sk-web") as url:
        yield url


@pytest.fixture
def browser():
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1200,800"):
        options.add_argument(arg)
    try:
        driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    except Exception as e:  # a broken install (driver and browser versions apart, missing libraries)
        pytest.skip(f"headless Chromium does not start: {type(e).__name__}: {str(e)[:300]}")
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def test_demo_page_upload_ask_and_read(fast_run, base, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def answers() -> list:
        return browser.find_elements(By.CSS_SELECTOR, ".msg.assistant, .msg.error")

    def ask(question: str, n: int) -> str:
        browser.find_element(By.ID, "prompt").send_keys(question)
        browser.find_element(By.ID, "send").click()
        WebDriverWait(browser, 60).until(lambda _: len(answers()) == n and answers()[-1].get_attribute("data-done"))
        reply = answers()[-1]
        assert "error" not in reply.get_attribute("class"), reply.text
        return reply.text

    browser.get(base + "/")
    assert "xllava" in browser.title
    browser.find_element(By.ID, "key").send_keys("sk-web")
    temperature = browser.find_element(By.ID, "temperature")  # the 4-step model talks only when sampled
    temperature.clear()
    temperature.send_keys("1")
    browser.find_element(By.ID, "file").send_keys(str(world_images(fast_run)[0]))
    WebDriverWait(browser, 10).until(
        lambda _: (browser.find_element(By.ID, "preview").get_attribute("src") or "").startswith("data:image/png")
    )
    first = ask("공은 무슨 색이에요?", 1)
    second = ask("And what is on the left?", 2)
    shot = tmp_path / "serve-demo.png"
    browser.save_screenshot(str(shot))

    assert first and second
    users = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".msg.user")]
    assert users == ["공은 무슨 색이에요?", "And what is on the left?"]
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot: {shot}")


def test_demo_page_shows_refusals(base, browser):
    """A wrong API key comes back as the server's message in the chat, not a silent failure."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(base + "/")
    browser.find_element(By.ID, "key").send_keys("wrong")
    browser.find_element(By.ID, "prompt").send_keys("hello")
    browser.find_element(By.ID, "send").click()
    WebDriverWait(browser, 30).until(lambda _: browser.find_elements(By.CSS_SELECTOR, ".msg.error"))
    assert "incorrect API key" in browser.find_element(By.CSS_SELECTOR, ".msg.error").text
