"""Open the built site in headless Chromium: nothing is fetched from outside the machine, the
widgets are drawn and the math is typeset (all assets are self-hosted)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest

from conftest import ROOT

pytestmark = pytest.mark.site

SITE = ROOT / "_build" / "html"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Chromium's own services (update checks, sign-in) that it contacts by itself, whatever the page is.
BROWSER_SERVICES = re.compile(r"(^|\.)(google\.com|googleapis\.com|gstatic\.com|gvt1\.com)$")


def render(page: Path, tmp_path: Path) -> tuple[str, list[str]]:
    """(DOM after scripts ran, URLs of every request that left the machine)."""
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (apt-get install chromium); the browser test needs it")
    if not page.exists():
        pytest.skip(f"{page} does not exist: build the site first (make book or make test)")
    netlog = tmp_path / "net.json"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=15000",
           f"--log-net-log={netlog}", "--dump-dom", page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    dom = proc.stdout
    assert "<html" in dom, proc.stderr[-2000:]
    urls = set(re.findall(r'"url":"(https?://[^"]+)"', netlog.read_text(errors="replace")))
    external = []
    for url in urls:
        host = urlparse(url).hostname or ""
        if host in ("127.0.0.1", "localhost") or BROWSER_SERVICES.search(host):
            continue
        external.append(url)
    return dom, sorted(external)


def test_chapter_page_offline_with_widgets_and_math(tmp_path):
    dom, external = render(SITE / "book" / "01_dip_basics.html", tmp_path)
    assert external == [], f"the page fetched from outside the machine: {external}"
    assert "widget-slider" in dom, "the iteration browser's slider was not drawn"
    assert "widget-play" in dom or "widget-button" in dom
    assert "widget-hprogress" in dom, "the progress bars were not drawn"
    assert "<mjx-container" in dom, "the math was not typeset"


def test_intro_page_offline_with_math(tmp_path):
    dom, external = render(SITE / "book" / "intro.html", tmp_path)
    assert external == [], f"the page fetched from outside the machine: {external}"
    assert "<mjx-container" in dom
    assert "Ulyanov" in dom  # the bibliography resolved


def test_page_does_not_reference_cdns():
    page = SITE / "book" / "01_dip_basics.html"
    if not page.exists():
        pytest.skip("site not built")
    html = page.read_text(encoding="utf-8")
    srcs = re.findall(r'<(?:script|link|img)[^>]+(?:src|href)="(https?://[^"]+)"', html)
    assert srcs == [], srcs
