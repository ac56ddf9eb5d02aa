"""The page holds a person to the server's bounds: web/limits.js applies /lanqueue/fields (from
api/fields.py) to the inputs, including those drawn later. Headless chromium against a real
`lanqueue serve` process (see test_web_browser.py for what it needs)."""

from __future__ import annotations

import requests
from test_web_browser import H, pytestmark  # noqa: F401
from test_web_settings import add_job, browser, open_page  # noqa: F401

try:
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover - skipped by pytestmark
    expect = None  # type: ignore[assignment]


def test_inputs_take_the_served_limits_also_when_drawn_later(node_process, browser):  # noqa: F811
    node = node_process()
    inputs = requests.get(node.url + "/lanqueue/fields", headers=H, timeout=5).json()["inputs"]
    add_job(node.url, "Plates", "p.gcode", ["PLA"])
    page, errors = open_page(browser, node.url)
    # drawn with the queue (queues.js), after the limits arrived
    expect(page.locator(".job-name").first).to_have_attribute("maxlength", str(inputs["job-name"]["maxlength"]))
    # in index.html from the start
    expect(page.locator("#drv-below")).to_have_attribute("max", str(inputs["drv-below"]["max"]).rstrip("0").rstrip("."))
    # the materials template says maxlength="100"; the server takes what fields.MATERIALS says
    page.click("#open-settings")
    page.click("#tab-materials")
    page.get_by_role("button", name="Add a tool").click()
    expect(page.locator(".mat-input").first).to_have_attribute("maxlength", str(inputs["mat-input"]["maxlength"]))
    assert errors == []
