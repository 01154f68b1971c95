"""The sign-up, confirmation and unsubscribe pages driven by a real headless Chromium (Debian's
`chromium` + `chromium-driver`) against the live server, with the page's JavaScript switched
off: every step must work with a plain HTML form."""

from __future__ import annotations

import shutil

import pytest

from newsletter.records import SubscriberStatus
from newsletter.screenshot import CHROMEDRIVER, CHROMIUM, CHROMIUM_FLAGS
from newsletter.subscribers import add_subscriber
from newsletter.web.confirm import confirmation_path
from tests.test_web import confirmation_link, live_web, read_eml, status_of, wait_for

ACTIVE = SubscriberStatus.ACTIVE
UNCONFIRMED = SubscriberStatus.UNCONFIRMED
UNSUBSCRIBED = SubscriberStatus.UNSUBSCRIBED

# The same browser and flags as `newsletter preview --screenshot`, on a phone's viewport.
FLAGS = (*CHROMIUM_FLAGS, "--disable-dev-shm-usage", "--window-size=390,844")

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="headless Chromium not installed (apt-get install chromium chromium-driver)",
)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    driver_path = CHROMEDRIVER if CHROMEDRIVER.exists() else shutil.which("chromedriver")
    assert driver_path, (
        "chromium is installed but chromedriver is not (apt-get install chromium-driver)"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    # The pages must work for readers who browse without JavaScript.
    options.add_experimental_option(
        "prefs", {"profile.managed_default_content_settings.javascript": 2}
    )
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(driver_path)))
    driver.set_page_load_timeout(15)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def web(tmp_path, monkeypatch):
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY", raising=False)
    with live_web(tmp_path) as live:
        yield live


def heading(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "h1").text


def press(driver, button) -> None:
    """Click a submit button and wait until the browser has left the page it was on. While
    the page is being replaced, chromedriver may answer the staleness probe with "Node with
    given id does not belong to the document" instead of a stale element: probed again."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    button.click()
    WebDriverWait(driver, 10, ignored_exceptions=(WebDriverException,)).until(
        expected_conditions.staleness_of(button)
    )


def fits_the_screen(driver) -> bool:
    """No sideways scrolling on a phone-sized window."""
    width = driver.execute_cdp_cmd(
        "Runtime.evaluate",
        {
            "expression": "document.documentElement.scrollWidth <= window.innerWidth",
            "returnByValue": True,
        },
    )
    return width["result"]["value"] is True


def test_sign_up_and_confirm_in_a_browser(web, browser, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(f"{web.url}/subscribe")
    assert heading(browser) == "Subscribe to Endings Explained"
    assert fits_the_screen(browser)
    email = browser.find_element(By.CSS_SELECTOR, "label[for=email] + input")
    assert email.get_attribute("id") == "email" and email.get_attribute("type") == "email"
    email.send_keys("browser.reader@example.com")
    browser.find_element(By.ID, "name").send_keys("Bea Reader")
    browser.save_screenshot(str(tmp_path / "subscribe.png"))
    press(browser, browser.find_element(By.CSS_SELECTOR, "button[type=submit]"))

    assert heading(browser) == "Check your inbox"
    row = web.store.subscribers.by_email("browser.reader@example.com")
    assert row.status == UNCONFIRMED and row.name == "Bea Reader"

    link = confirmation_link(read_eml(wait_for(confirmation_path(web.settings, row.id))), web.url)
    browser.get(link)
    assert heading(browser) == "Confirm your subscription"
    assert status_of(web.store, "browser.reader@example.com") == UNCONFIRMED
    press(browser, browser.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    assert heading(browser) == "You are subscribed"
    assert status_of(web.store, "browser.reader@example.com") == ACTIVE


def test_unsubscribe_in_a_browser(web, browser, tmp_path):
    from selenium.webdriver.common.by import By

    row = add_subscriber(web.store, "leaving@example.com", "Leaving")
    browser.get(f"{web.url}/unsubscribe/{row.token}")
    assert heading(browser) == "Unsubscribe from Endings Explained?"
    assert fits_the_screen(browser)
    assert status_of(web.store, "leaving@example.com") == ACTIVE
    button = browser.find_element(By.CSS_SELECTOR, "button[type=submit]")
    assert button.text == "Unsubscribe"
    browser.save_screenshot(str(tmp_path / "unsubscribe.png"))
    press(browser, button)
    assert heading(browser) == "You are unsubscribed"
    assert status_of(web.store, "leaving@example.com") == UNSUBSCRIBED

    browser.get(f"{web.url}/unsubscribe/{row.token[:-3]}")
    assert heading(browser) == "This link is not valid"


@pytest.fixture(scope="module")
def scripted_browser(tmp_path_factory):
    """Chromium with JavaScript on (as most readers browse), on a phone's viewport."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    driver_path = CHROMEDRIVER if CHROMEDRIVER.exists() else shutil.which("chromedriver")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-js-profile')}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(driver_path)))
    driver.set_page_load_timeout(15)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def test_the_sign_up_form_takes_the_browsers_time_zone_and_the_reader_may_change_it(
    web, scripted_browser
):
    """The form's one script (ours, allowed by `script-src 'self'`) fills the time zone the
    browser reports; the reader sees it and may type another; axe-core finds nothing on the
    filled form. The browser's zone is set through CDP, not taken from the machine."""
    from selenium.webdriver.common.by import By

    from tests.test_accessibility import AXE, axe_violations

    browser = scripted_browser
    # Chromium's ICU reports Kolkata by its older IANA name, a link zoneinfo knows as well:
    # what the browser says is what is stored.
    said = "Asia/Calcutta"
    browser.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": "Asia/Kolkata"})
    try:
        browser.get(f"{web.url}/subscribe")
        field = browser.find_element(By.ID, "timezone")
        assert field.get_attribute("value") == said
        assert browser.find_element(By.ID, "timezone-detected").get_attribute("value") == said
        assert fits_the_screen(browser)
        browser.find_element(By.ID, "email").send_keys("kolkata@example.com")
        press(browser, browser.find_element(By.CSS_SELECTOR, "button[type=submit]"))
        assert heading(browser) == "Check your inbox"
        assert web.store.subscribers.by_email("kolkata@example.com").timezone == said

        # A zone the reader types over the browser's is the one kept.
        browser.get(f"{web.url}/subscribe")
        field = browser.find_element(By.ID, "timezone")
        assert field.get_attribute("value") == said
        field.clear()
        field.send_keys("America/New_York")
        browser.find_element(By.ID, "email").send_keys("typed@example.com")
        press(browser, browser.find_element(By.CSS_SELECTOR, "button[type=submit]"))
        assert web.store.subscribers.by_email("typed@example.com").timezone == ("America/New_York")

        if AXE.exists():
            for dark in (False, True):
                assert axe_violations(browser, f"{web.url}/subscribe", dark) == []
                value = browser.find_element(By.ID, "timezone").get_attribute("value")
                assert value == said  # axe looked at the filled form
    finally:
        browser.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": ""})


def test_without_javascript_the_form_sends_no_zone_and_the_newsletters_applies(web, browser):
    from selenium.webdriver.common.by import By

    browser.get(f"{web.url}/subscribe")
    assert browser.find_element(By.ID, "timezone").get_attribute("value") == ""
    browser.find_element(By.ID, "email").send_keys("plain@example.com")
    press(browser, browser.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    assert heading(browser) == "Check your inbox"
    assert web.store.subscribers.by_email("plain@example.com").timezone == ""
