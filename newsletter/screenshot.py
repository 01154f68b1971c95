"""Screenshots of a finished email in headless Chromium: desktop, phone and dark mode.

A browser is not an inbox, but it renders the responsive and dark-mode CSS the way Apple
Mail and the other WebKit/Blink clients do, so the pictures show what most readers get and
catch a layout that scrolls sideways on a phone. Chromium is driven through chromedriver
(selenium) with the Debian packages `chromium` and `chromium-driver`; nothing is downloaded.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from newsletter.exceptions import MissingExtra, ScreenshotError

CHROMIUM = Path(os.environ.get("NEWSLETTER_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("NEWSLETTER_CHROMEDRIVER", "/usr/bin/chromedriver"))
INSTALL_HINT = "apt-get install chromium chromium-driver"

# A fresh profile, no network chatter of the browser's own, no GPU: the same in CI and here.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--hide-scrollbars",
    "--mute-audio",
)
PAGE_LOAD_SECONDS = 30
# Long issues make tall pictures; past this many CSS pixels the rest is cut off.
MAX_HEIGHT = 12000


@dataclass(frozen=True)
class View:
    """One way of looking at the email: a viewport width and a colour scheme."""

    name: str
    width: int
    dark: bool = False
    mobile: bool = False


DESKTOP = View("desktop", 1024)
PHONE = View("phone", 375, mobile=True)
DARK = View("dark", 375, dark=True, mobile=True)
VIEWS: tuple[View, ...] = (DESKTOP, PHONE, DARK)


@dataclass(frozen=True)
class Shot:
    """A screenshot and the page measurements taken with it."""

    view: View
    path: Path
    scroll_width: int
    height: int

    @property
    def scrolls_sideways(self) -> bool:
        """True when the layout is wider than the viewport (a reader would scroll sideways)."""
        return self.scroll_width > self.view.width


def pixel_spread(png: Path) -> float:
    """Standard deviation of the grey levels: about 0 for a blank (one-colour) picture."""
    try:
        from PIL import Image, ImageStat
    except ImportError:
        raise MissingExtra("screenshots", "preview --screenshot") from None

    with Image.open(png) as image:
        return ImageStat.Stat(image.convert("L")).stddev[0]


def is_blank(png: Path, threshold: float = 2.0) -> bool:
    """True when the screenshot shows (almost) nothing: a failed load or an empty page."""
    return pixel_spread(png) < threshold


def available() -> str | None:
    """None when screenshots can be taken, else why not (with the install command)."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.exists():
            return f"{path} not found: install Debian's {package} ({INSTALL_HINT})"
    return None


def require_extra() -> None:
    """MissingExtra unless the Python parts screenshots need (selenium, pillow) are installed:
    they are the `screenshots` extra, left out of a plain install (230 MB with them)."""
    try:
        import PIL  # noqa: F401
        import selenium  # noqa: F401
    except ImportError:
        raise MissingExtra("screenshots", "preview --screenshot") from None


def screenshots(html_path: Path, out_dir: Path, *, prefix: str | None = None) -> list[Path]:
    """PNG screenshots of `html_path` at desktop and phone widths and in dark mode, written
    to `out_dir` as PREFIX-desktop.png, PREFIX-phone.png and PREFIX-dark.png (PREFIX
    defaults to the file's stem)."""
    return [shot.path for shot in capture(html_path, out_dir, prefix=prefix)]


def capture(
    html_path: Path,
    out_dir: Path,
    *,
    prefix: str | None = None,
    views: Sequence[View] = VIEWS,
    max_height: int = MAX_HEIGHT,
) -> list[Shot]:
    """Take one full-page screenshot per view and measure the layout's width with it."""
    require_extra()
    problem = available()
    if problem:
        raise ScreenshotError(f"cannot take screenshots: {problem}")
    html_path = Path(html_path).resolve()
    if not html_path.is_file():
        raise ScreenshotError(f"{html_path}: no such file")
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = prefix or html_path.stem
    profile = tempfile.mkdtemp(prefix="newsletter-chromium-")
    try:
        driver = _start(profile)
        try:
            return [
                _shoot(driver, html_path, view, out_dir / f"{prefix}-{view.name}.png", max_height)
                for view in views
            ]
        finally:
            driver.quit()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def _start(profile: str):
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    # Giving both paths keeps selenium from looking for (or downloading) a driver itself.
    service = Service(executable_path=str(CHROMEDRIVER))
    try:
        driver = webdriver.Chrome(options=options, service=service)
    except WebDriverException as exc:
        message = (exc.msg or str(exc)).strip().splitlines()[0]
        raise ScreenshotError(f"could not start headless Chromium: {message}") from None
    driver.set_page_load_timeout(PAGE_LOAD_SECONDS)
    return driver


def _metrics(view: View, height: int) -> dict:
    return {
        "width": view.width,
        "height": height,
        "deviceScaleFactor": 1,
        "mobile": view.mobile,
    }


def _shoot(driver, html_path: Path, view: View, target: Path, max_height: int) -> Shot:
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", _metrics(view, 800))
    scheme = "dark" if view.dark else "light"
    driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"media": "screen", "features": [{"name": "prefers-color-scheme", "value": scheme}]},
    )
    driver.get(html_path.as_uri())
    scroll_width, scroll_height = driver.execute_script(
        "const d = document.documentElement;"
        "return [d.scrollWidth, Math.max(d.scrollHeight, document.body.scrollHeight)];"
    )
    height = max(1, min(int(scroll_height), max_height))
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", _metrics(view, height))
    target.write_bytes(driver.get_screenshot_as_png())
    return Shot(view=view, path=target, scroll_width=int(scroll_width), height=height)
