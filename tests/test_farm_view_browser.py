"""The farm view in headless Chromium against THREE real `lanqueue serve` processes sharing the LAN
queue `farm` on loopback (static peers, no mDNS): every printer's card appears on one node's page,
actions pressed there reach another node's printer, and a node switched off is shown off within
seconds. Chromium is Debian's (/usr/bin/chromium), driven by playwright (test_web_browser.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from conftest import API_KEY, CP
from test_web_browser import CHROMIUM, CHROMIUM_ARGS, shot, sync_playwright

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sync_playwright is None, reason="the playwright package is not installed (pip install playwright)"),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no chromium at {CHROMIUM} (apt-get install chromium)"),
    pytest.mark.timeout(240),
]

H = {"X-Api-Key": API_KEY}
SAMPLE = Path(__file__).resolve().parent.parent / "lanqueue" / "samples" / "prusaslicer.gcode"


def long_print(path: Path, moves: int = 1500) -> Path:
    """The PrusaSlicer sample (its thumbnail and time estimate) with `moves` long moves inserted
    after its head, so it prints for a minute even on the 200x virtual printer."""
    lines = SAMPLE.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("G1 "))
    extra = [f"G1 X{100 if i % 2 == 0 else 0} Y10 F600" for i in range(moves)]
    path.write_text("\n".join(lines[:at] + extra + lines[at:]) + "\n")
    return path


def node_id(node) -> str:
    return requests.get(node.url + "/lanqueue/peers", headers=H, timeout=5).json()["node_id"]


def test_three_nodes_cards_actions_and_a_node_switched_off(node_process, tmp_path):
    from lan_helpers import cluster_ports, lan_args, peers_online, post, upload, wait
    from playwright.sync_api import expect

    ports = cluster_ports(3)
    a, b, c = (node_process(lan_args(ports, p) + ["--name", name], port=p)
               for p, name in zip(ports, ("alpha", "beta", "gamma"), strict=True))
    wait(lambda: all(peers_online(n, 2) for n in (a, b, c)), what="every node sees both others")
    ids = {n: node_id(n) for n in (a, b, c)}
    # beta and alpha each have a long print queued locally; nobody manages a printer yet
    for n, job, moves in ((b, "Long", 1500), (a, "Other", 1400)):  # other bytes: alpha lacks beta's thumbnail
        upload(n, "long.gcode", long_print(tmp_path / "long.gcode", moves).read_bytes())
        post(n, CP + "/set/add", data={"path": "long.gcode", "jobName": job, "jobDraft": "false"})
    post(b, CP + "/materials/set", data={"materials": json.dumps(["PLA_red_#ff0000"])})  # the file asks for PLA

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1280, "height": 1600}).new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            page.goto(f"{a.url}/?apikey={API_KEY}")
            card = {n: page.locator(f'#farm article[data-node="{ids[n]}"]') for n in (a, b, c)}
            for n in (a, b, c):  # every printer of the queue, each live
                expect(card[n]).to_have_attribute("data-farm-state", "on", timeout=15_000)
            expect(card[a]).to_contain_text("(this node)")
            expect(card[b]).to_contain_text("beta")
            expect(card[c]).to_contain_text("virtual")  # the backend each node drives
            expect(card[b].locator(".mat-chip")).to_have_text("PLA red")  # what beta has loaded
            shot(page, "farm-01-three-nodes")

            # start managing beta from alpha's page: beta prints its job, seen live on alpha's page
            card[b].locator('button[data-farm-action="start"]').click()
            wait(lambda: requests.get(b.url + CP + "/state/get", headers=H, timeout=5).json()["active"],
                 what="beta managed")
            expect(card[b].locator(".badge[data-state]")).to_have_text("Printing", timeout=20_000)
            expect(card[b]).to_contain_text("Long")
            # the slicer's thumbnail of beta's file, relayed by alpha (beta's local file is not on alpha)
            thumb = card[b].locator("img.farm-thumb")
            expect(thumb).to_have_count(1)
            wait(lambda: thumb.evaluate("img => img.complete && img.naturalWidth > 0"), what="thumbnail loaded")
            beta = next(x for x in requests.get(a.url + "/lanqueue/farm", headers=H, timeout=5).json()["cards"]
                        if x["node_id"] == ids[b])
            assert beta["estimate_s"] > 0 and beta["job"]["name"] == "Long" and beta["left_s"] is not None
            name = beta["thumbnail"].rsplit("/", 1)[1]
            relayed = requests.get(f"{a.url}/lanqueue/farm/thumbnail/{ids[b]}/{name}", headers=H, timeout=5)
            assert relayed.ok and relayed.content == requests.get(b.url + beta["thumbnail"], headers=H, timeout=5).content
            assert not (a.data_dir / "gcodemeta" / name).exists()  # relayed, not copied in
            shot(page, "farm-02-beta-printing")

            # pause, resume and cancel beta's print from alpha's page
            card[b].locator('button[data-farm-action="pause"]').click()
            wait(lambda: requests.get(b.url + "/api/job", headers=H, timeout=5).json()["state"] == "Paused",
                 what="beta paused")
            expect(card[b].locator(".badge[data-state]")).to_have_text("Paused", timeout=10_000)
            card[b].locator('button[data-farm-action="resume"]').click()
            wait(lambda: requests.get(b.url + "/api/job", headers=H, timeout=5).json()["state"] == "Printing",
                 what="beta printing again")
            cancel = card[b].locator('button[data-farm-action="cancel"]')
            expect(cancel).to_be_visible(timeout=10_000)
            cancel.click()
            expect(cancel).to_have_text("Really cancel?")
            cancel.click()
            wait(lambda: requests.get(b.url + CP + "/history/get", headers=H, timeout=5).json()[0]["result"] == "aborted",
                 what="beta's print cancelled")
            # and gamma is stopped from managing: nothing there changed
            assert not requests.get(c.url + CP + "/state/get", headers=H, timeout=5).json()["active"]

            # alpha's timeline: its job waits for a printer until alpha is managed, then alpha is
            # expected to print it and the slicer's estimate says when it is done
            planned = page.locator('#timeline ol[data-queue="local"] li')
            expect(planned).to_contain_text("Other", timeout=10_000)
            expect(planned).to_contain_text("no printer can take it now")
            card[a].locator('button[data-farm-action="start"]').click()
            expect(page.locator("#printer-state")).to_have_text("Printing", timeout=20_000)
            expect(planned).to_contain_text("alpha", timeout=10_000)
            expect(planned.locator(".tl-when")).to_contain_text("done")
            # pause, resume and cancel on alpha's own printer card
            page.click('#printer-actions button[data-job-action="pause"]')
            expect(page.locator("#printer-state")).to_have_text("Paused", timeout=10_000)
            page.click('#printer-actions button[data-job-action="resume"]')
            expect(page.locator("#printer-state")).to_have_text("Printing", timeout=10_000)
            page.click('#printer-actions button[data-job-action="cancel"]')
            page.click('#printer-actions button[data-job-action="cancel"]')  # "Really cancel?"
            wait(lambda: requests.get(a.url + CP + "/history/get", headers=H, timeout=5).json()[0]["result"] == "aborted",
                 what="alpha's print cancelled")
            shot(page, "farm-03-timeline")

            # gamma is switched off: alpha's page shows it off, with since when, within seconds
            c.kill()
            expect(card[c]).to_have_attribute("data-farm-state", "off", timeout=10_000)
            expect(card[c]).to_contain_text("since")
            expect(card[c].locator("button")).to_have_count(0)
            expect(card[b]).to_have_attribute("data-farm-state", "on")
            shot(page, "farm-04-gamma-off")
            assert errors == [], errors
        finally:
            browser.close()
