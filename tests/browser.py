"""Drive headless Chromium for the page tests (no Python dependencies): dump the DOM after the
page's scripts ran, collect console output, take screenshots. `.ci/run` installs Chromium
(`apt-get install -y chromium`) and sets CI=true: there a missing browser fails the test. Outside
CI (a fresh machine running the README's test command) it skips them with the reason."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         "--enable-logging=stderr", "--v=0"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    reason = "headless Chromium not found (install it with `apt-get install -y chromium`; .ci/run does)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason}; CI is set, so the browser tests must run")
    pytest.skip(reason)


def run(url: str, profile: Path, *extra: str) -> tuple[str, list[str]]:
    """(stdout, console lines) of one headless Chromium run on `url`."""
    proc = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *extra, url],
                          capture_output=True, text=True, timeout=60)
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    return proc.stdout, console


def dump_dom(url: str, profile: Path) -> tuple[str, list[str]]:
    dom, console = run(url, profile, "--dump-dom")
    assert "<body" in dom, f"chromium printed no DOM for {url}"
    return dom, console


def screenshot(url: str, profile: Path, out: Path, size: str = "1280,1800") -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    run(url, profile, f"--screenshot={out}", f"--window-size={size}")
    assert out.is_file() and out.stat().st_size > 0, f"no screenshot written to {out}"
    return out


def page_errors(dom: str) -> str:
    """Text the page's error catcher wrote into <pre id="errors">."""
    match = re.search(r'<pre id="errors"[^>]*>(.*?)</pre>', dom, re.S)
    assert match, "the page has no #errors element"
    return match.group(1).strip()


def items(dom: str) -> list[tuple[str, bool]]:
    """(class, hidden) of every `.item` element in the dumped DOM."""
    return [(m.group(1) or "", re.search(r'\shidden(=|\s|$)', m.group(2)) is not None)
            for m in re.finditer(r'<div class="item(?: ([a-z ]*))?"([^>]*)>', dom)]
