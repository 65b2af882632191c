"""The web page in headless Chromium (Playwright, the Debian browser): `nanoemox serve` runs as a
real subprocess; a person's steps -- pick a clip, pick tasks, (re)enter the API key, analyze --
must end with answers, chips and the gate chart on screen."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from serverkit import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
KEY = "page-key"


@pytest.fixture(scope="module")
def clip(talking_clip) -> Path:
    return talking_clip


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NANOEMOX_CACHE": str(log.parent / "cache")}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "nanoemox.cli", "serve", "--preset", "tiny", "--host", "127.0.0.1",
                                 "--port", str(port), "--api-key", KEY, "--queue-size", "4"], stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"nanoemox serve exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            pytest.fail(f"nanoemox serve did not come up:\n{log.read_text()}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_page_upload_analyze_and_screenshot(served, clip, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(served)
            assert page.title() == "Nano-EmoX"
            page.wait_for_function("document.getElementById('model').textContent.includes('tiny')")

            page.set_input_files("#file", str(clip))
            page.wait_for_selector("#preview video")
            for task in ("ovmer", "eri", "mir"):
                page.check(f"#tasks input[value={task}]")
            page.fill("#transcript", "I can't believe you forgot my birthday again.")
            page.fill("#max-new-tokens", "12")

            page.click("#analyze")  # no key yet: the server says 401 and the page says so
            page.wait_for_selector("#status.error")
            assert "401" in page.text_content("#status")

            page.fill("#api-key", KEY)
            page.click("#analyze")
            page.wait_for_selector("#status.ok", timeout=90_000)
            cards = page.locator(".task-card")
            assert cards.count() == 6
            assert sorted(cards.nth(i).get_attribute("data-task") for i in range(6)) == sorted(["msa", "mer", "ovmer", "eri", "mir", "erg"])
            for i in range(6):  # every card shows its raw answer; unreadable ones say why
                card = cards.nth(i)
                assert card.locator(".raw pre").text_content() != ""
                assert card.locator(".parse-error").count() == 1 or card.locator(".chip").count() >= 1
            assert page.locator("#gate .gate-row").count() == 2
            assert "modalities" in page.text_content("#meta")
            assert "generate" in page.text_content("#timings")
            assert not errors, errors

            shot = tmp_path / "nanoemox-web.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            shutil.copy(shot, "/tmp/nanoemox-web.png")
        finally:
            browser.close()
