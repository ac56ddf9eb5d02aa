"""The page's Settings area in headless chromium against a real `lanqueue serve` process:
loaded materials (and the queue's "needs … on tool N" marks), scripts/preprocessors/events,
the "try it" panel, driver settings and queue strategies. Same browser setup as
test_web_browser.py (Debian's chromium, no `playwright install`); screenshots in test-artifacts/.
"""

from __future__ import annotations

import json
import time

import pytest
import requests
from conftest import API_KEY, CP
from test_web_browser import (  # noqa: F401
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    H,
    pytestmark,
    row,
    sync_playwright,
)

try:
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover - skipped by pytestmark
    expect = None  # type: ignore[assignment]


def get(url: str, path: str):
    r = requests.get(url + CP + path, headers=H, timeout=5)
    r.raise_for_status()
    return r.json()


def until(predicate, timeout: float = 5.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached in {timeout} s")


def shot(page, name: str, full: bool = True) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")  # the sticky top bar belongs at the top of a full-page shot
    page.screenshot(path=str(ARTIFACTS / f"settings-{name}.png"), full_page=full)


def shot_of(locator, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    locator.screenshot(path=str(ARTIFACTS / f"settings-{name}.png"))


def no_overflow(page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]


@pytest.fixture
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def open_page(browser, url: str, width: int = 1280, height: int = 1000):
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{url}/?apikey={API_KEY}")
    expect(page.locator("#live")).to_have_attribute("data-state", "on", timeout=10_000)
    return page, errors


def add_job(url: str, name: str, path: str, materials: list[str]) -> None:
    r = requests.post(url + "/api/files/local", headers=H, files={"file": (path, "G28\nG1 X10 Y10\n")}, timeout=10)
    assert r.status_code == 201, r.text
    data = [("path", path), ("jobName", name), ("jobDraft", "false")] + [("materials", m) for m in materials]
    r = requests.post(url + CP + "/set/add", headers=H, data=data, timeout=5)
    assert r.ok, r.text


def test_materials_mark_sets_and_are_set_through_the_page(node_process, browser):
    node = node_process()
    url = node.url
    add_job(url, "Grey bracket", "bracket.gcode", ["PETG_grey_#808080"])
    add_job(url, "Any colour", "any.gcode", [])
    page, errors = open_page(browser, url)

    # nothing loaded: the PETG set is marked, the set without needs is not
    grey = row(page, "Grey bracket").locator("li[data-set]")
    expect(grey).to_have_attribute("data-printable", "false", timeout=10_000)
    expect(grey.locator(".mismatch")).to_have_text("needs PETG_grey_#808080 on tool 0")
    expect(row(page, "Any colour").locator("li[data-set]")).to_have_attribute("data-printable", "true")
    expect(page.locator("#loaded-materials")).to_contain_text("None set")
    shot(page, "01-mismatch")

    # the settings are closed until asked for; the side card's Change opens the Materials tab
    expect(page.locator("#panel-materials")).to_be_hidden()
    page.click("#materials-change")
    expect(page.locator("#panel-materials")).to_be_visible()
    expect(page.locator("#tab-materials")).to_have_attribute("aria-selected", "true")
    # the queue's need is offered as a one-click fill; a second tool is typed by hand
    expect(page.locator("#materials-needed")).to_contain_text("Load PETG grey in tool 0")
    page.click("#materials-add")
    page.get_by_label("Material in tool 0").fill("PLA_red_#ff0000")
    swatch = page.locator('#materials-rows li[data-tool="0"] .swatch')
    assert swatch.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(255, 0, 0)"
    page.click("#materials-add")
    page.get_by_label("Material in tool 1").fill("TPU_black_#000000")
    page.click("#materials-save")
    expect(page.locator(".toast").last).to_contain_text("Materials saved", timeout=5_000)
    assert get(url, "/materials/get") == ["PLA_red_#ff0000", "TPU_black_#000000"]
    expect(grey).to_have_attribute("data-printable", "false")  # still the wrong material
    shot_of(page.locator("#settings"), "02-materials-form")

    # load what the set needs with the offered button: the mark goes away
    page.locator('#materials-needed button[data-load-tool="0"]').click()
    expect(page.get_by_label("Material in tool 0")).to_have_value("PETG_grey_#808080")
    page.click("#materials-save")
    until(lambda: get(url, "/materials/get") == ["PETG_grey_#808080", "TPU_black_#000000"], what="materials saved")
    expect(grey).to_have_attribute("data-printable", "true", timeout=5_000)
    expect(grey.locator(".mismatch")).to_have_count(0)
    expect(page.locator('#loaded-materials li[data-tool="0"]')).to_contain_text("PETG grey")
    sw = page.locator('#loaded-materials li[data-tool="0"] .swatch')
    assert sw.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(128, 128, 128)"

    # remove the last tool
    page.click("#materials-remove")
    page.click("#materials-save")
    until(lambda: get(url, "/materials/get") == ["PETG_grey_#808080"], what="tool removed")
    expect(page.locator("#materials-save")).to_be_enabled()
    # one tool holding a name with a comma stays one tool
    page.get_by_label("Material in tool 0").fill("PLA, matte_white_#ffffff")
    page.click("#materials-save")
    until(lambda: get(url, "/materials/get") == ["PLA, matte_white_#ffffff"], what="comma kept")
    expect(page.locator("#materials-save")).to_be_enabled()
    page.get_by_label("Material in tool 0").fill("PETG_grey_#808080")
    page.click("#materials-save")
    until(lambda: get(url, "/materials/get") == ["PETG_grey_#808080"], what="grey again")
    shot(page, "03-materials-loaded")
    assert errors == [], errors


def test_automation_driver_and_queue_settings(node_process, browser):
    node = node_process()
    url = node.url
    page, errors = open_page(browser, url)
    before = get(url, "/automation/get")
    assert "@pause" in before["scripts"]["Bed clear wait"]

    page.click("#open-settings")
    page.click("#tab-automation")
    panel = page.locator("#panel-automation")
    expect(panel).to_be_visible()
    # the default after-print wait is spelled out as "a person"
    expect(panel.locator(".callout")).to_contain_text("waits for a person")
    success = panel.locator('.auto-event[data-event="continuousprint_success"]')
    expect(success.locator(".badge")).to_have_text("waits for a person")
    expect(success.locator("select.att-script")).to_have_value("Bed clear wait")
    shot_of(page.locator("#settings"), "04-automation")

    # --- edit a script's G-code and save ------------------------------------------------------
    start = page.get_by_label("G-code of script Start print")
    start.fill("G28\nG1 Z5 F600 ; purge start\n")
    expect(page.locator("#auto-dirty")).to_have_text("Unsaved changes.")
    page.click("#auto-save")
    expect(page.locator(".toast").last).to_contain_text("saved", timeout=5_000)
    until(lambda: get(url, "/automation/get")["scripts"]["Start print"] == "G28\nG1 Z5 F600 ; purge start\n",
          what="script saved")
    expect(page.locator("#auto-dirty")).to_have_text("No unsaved changes.")

    # --- a new script and preprocessor, attached to an event (unattended bed clearing) ---------
    page.fill("#new-script-name", "Sweep")
    page.click("#new-script")
    page.get_by_label("G-code of script Sweep").fill("G28 X\nM117 cleared by {who}\n")
    page.fill("#new-pre-name", "Checked")
    page.click("#new-pre")
    page.get_by_label("Program of preprocessor Checked").fill("print('checking')\n{'who': 'camera'}\n")
    success.locator("button.att-remove").click()  # detach "Bed clear wait"
    success.locator("button.att-add").click()
    success.locator("select.att-script").select_option("Sweep")
    success.locator("select.att-pre").select_option("Checked")
    expect(success.locator(".badge")).to_have_count(0)  # no @pause: nobody waits
    expect(panel.locator("#auto-callout")).to_contain_text("Nobody waits after a print")
    page.click("#auto-save")
    until(lambda: get(url, "/automation/get")["events"]["continuousprint_success"]
          == [{"script": "Sweep", "preprocessor": "Checked"}], what="attachment saved")
    saved = get(url, "/automation/get")
    assert saved["preprocessors"]["Checked"] == "print('checking')\n{'who': 'camera'}\n"
    assert "Bed clear wait" in saved["scripts"]  # detached, not deleted

    # --- order within an event: a second script moved before the first ----------------------
    start_ev = panel.locator('.auto-event[data-event="continuousprint_start_print"]')
    start_ev.locator("button.att-add").click()
    start_ev.locator("select.att-script").nth(1).select_option("Finish")
    start_ev.get_by_role("button", name="Run Finish earlier in Before each print").click()
    expect(start_ev.locator("select.att-script").first).to_have_value("Finish")
    page.click("#auto-save")
    until(lambda: [a["script"] for a in get(url, "/automation/get")["events"]["continuousprint_start_print"]]
          == ["Finish", "Start print"], what="order saved")

    # --- try it: simulate the event with the (saved) attachment --------------------------------
    page.select_option("#try-what", "event:continuousprint_success")
    page.click("#try-run")
    expect(page.locator("#try-gcode")).to_have_text("G28 X\nM117 cleared by camera", timeout=10_000)
    expect(page.locator("#try-stdout")).to_contain_text("checking")
    # one script with a failing preprocessor: the error is shown as stderr, no G-code
    page.get_by_label("Program of preprocessor Checked").fill("1/0\n")
    page.select_option("#try-what", "script:Sweep")
    page.select_option("#try-pre", "Checked")
    page.click("#try-run")
    expect(page.locator("#try-stderr")).to_contain_text("ZeroDivisionError", timeout=10_000)
    expect(page.locator("#try-gcode")).to_have_text("(nothing would be sent)")
    shot_of(page.locator("#panel-automation .try-it"), "05-try-it")
    page.click("#auto-revert")
    expect(page.get_by_label("Program of preprocessor Checked")).to_have_value("print('checking')\n{'who': 'camera'}\n")

    # --- rename a script: its attachments follow ----------------------------------------------
    name = page.get_by_label("Name of script Finish")
    name.fill("Shut down")
    name.press("Enter")
    page.click("#auto-save")
    until(lambda: "Shut down" in get(url, "/automation/get")["scripts"], what="rename saved")
    renamed = get(url, "/automation/get")
    assert "Finish" not in renamed["scripts"]
    assert [a["script"] for a in renamed["events"]["continuousprint_start_print"]] == ["Shut down", "Start print"]
    assert [a["script"] for a in renamed["events"]["continuousprint_finish"]] == ["Shut down"]

    # --- a bad automation: the node's 400 text is shown and nothing changes --------------------
    good = get(url, "/automation/get")
    page.evaluate("""() => { const s = document.querySelector('#auto-events [data-event="continuousprint_finish"] select.att-script');
        s.insertAdjacentHTML('beforeend', '<option value="No such script">No such script</option>');
        s.value = 'No such script'; s.dispatchEvent(new Event('change', {bubbles: true})); }""")
    page.click("#auto-save")
    error = page.locator("#auto-error")
    expect(error).to_be_visible(timeout=5_000)
    expect(error).to_contain_text("no script named 'No such script'")
    assert get(url, "/automation/get") == good
    expect(page.locator("#auto-dirty")).to_have_text("Unsaved changes.")
    shot_of(page.locator("#panel-automation .save-bar"), "06-automation-error")
    page.click("#auto-revert")
    expect(error).to_be_hidden()

    # --- driver settings ------------------------------------------------------------------------
    page.click("#tab-driver")
    expect(page.locator("#drv-retries")).to_have_value("3", timeout=5_000)
    page.fill("#drv-retries", "5")
    page.get_by_label("Wait for the bed to cool after each print").check()
    page.get_by_label("Bed below (°C)").fill("30")
    page.get_by_label("Stop waiting after (s)").fill("900")
    page.click("#driver-save")
    expect(page.locator(".toast").last).to_contain_text("Driver settings saved", timeout=5_000)
    d = get(url, "/driver/get")
    assert (d["max_retries"], d["cooldown"], d["cooldown_below"], d["cooldown_timeout"]) == (5, True, 30.0, 900.0)
    shot_of(page.locator("#settings"), "07-driver")
    # out of range: the node's refusal is shown, nothing changes
    page.evaluate("document.getElementById('drv-retries').removeAttribute('max')")
    page.fill("#drv-retries", "500")
    page.click("#driver-save")
    expect(page.locator("#driver-error")).to_be_visible(timeout=5_000)
    expect(page.locator("#driver-error")).to_contain_text("max_retries")
    assert get(url, "/driver/get")["max_retries"] == 5

    # --- queue strategy ---------------------------------------------------------------------
    page.click("#tab-queues")
    strategy = page.get_by_label("Strategy of local")
    expect(strategy).to_have_value("IN_ORDER", timeout=5_000)
    strategy.select_option("LEAST_MANUAL")
    page.click("#queues-save")
    expect(page.locator(".toast").last).to_contain_text("Queues saved", timeout=5_000)
    assert [(q["name"], q["strategy"]) for q in get(url, "/queues/get")] == [("local", "LEAST_MANUAL")]
    expect(page.locator('section.queue[data-queue="local"] .meta')).to_contain_text("LEAST_MANUAL", timeout=5_000)

    # join a LAN queue (its secret is sent once), then change its strategy without the secret
    page.get_by_label("LAN queue name").fill("farm")
    page.get_by_label("Secret").fill("farm-secret-1")
    page.click("#join-save")
    expect(page.locator(".toast").last).to_contain_text("Joined the LAN queue farm", timeout=10_000)
    assert [(q["name"], q["strategy"]) for q in get(url, "/queues/get")] == [("local", "LEAST_MANUAL"), ("farm", "IN_ORDER")]
    expect(page.locator('section.queue[data-queue="farm"]')).to_be_visible(timeout=10_000)
    page.get_by_label("Strategy of farm").select_option("LEAST_MANUAL")
    page.get_by_label("Strategy of local").select_option("IN_ORDER")
    page.click("#queues-save")
    until(lambda: [(q["name"], q["strategy"]) for q in get(url, "/queues/get")]
          == [("local", "IN_ORDER"), ("farm", "LEAST_MANUAL")], what="strategies saved")
    expect(page.locator("#queues-error")).to_be_hidden()
    # joining it again is refused with a message, nothing changes
    page.get_by_label("LAN queue name").fill("farm")
    page.get_by_label("Secret").fill("another-secret")
    page.click("#join-save")
    expect(page.locator("#join-error")).to_contain_text("already has a queue named farm", timeout=5_000)
    assert len(get(url, "/queues/get")) == 2
    shot_of(page.locator("#settings"), "08-queues")
    shot(page, "08-desktop")
    assert errors == [], errors


def test_settings_on_a_phone(node_process, browser):
    node = node_process()
    url = node.url
    add_job(url, "Two colours", "two.gcode", ["PLA_white_#ffffff", "PLA_black_#111111"])
    requests.post(url + CP + "/materials/set", headers=H, data={"materials": ["PLA_white_#ffffff"]}, timeout=5)
    page, errors = open_page(browser, url, width=390, height=844)
    expect(row(page, "Two colours").locator(".mismatch")).to_have_text(
        "needs PLA_black_#111111 on tool 1", timeout=10_000)
    no_overflow(page)
    shot(page, "09-phone-queue")
    for tab in ("materials", "automation", "driver", "queues"):
        page.click("#open-settings")
        page.click(f"#tab-{tab}")
        expect(page.locator(f"#panel-{tab}")).to_be_visible()
        page.wait_for_timeout(300)
        no_overflow(page)
        unlabelled = page.evaluate("""() => Array.from(document.querySelectorAll(
            '#settings input, #settings select, #settings textarea, #settings button'))
          .filter((e) => e.offsetParent !== null)
          .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
          .map((e) => e.outerHTML.slice(0, 100))""")
        assert unlabelled == [], unlabelled
        shot_of(page.locator("#settings"), f"10-phone-{tab}")
    # keyboard: arrows move between tabs
    page.focus("#tab-queues")
    page.keyboard.press("ArrowRight")
    expect(page.locator("#tab-materials")).to_be_focused()
    expect(page.locator("#panel-materials")).to_be_visible()
    assert errors == [], errors
    (ARTIFACTS / "settings-ok.json").write_text(json.dumps({"ok": True}))
