"""The web page in a real headless browser against a real `lanqueue serve` process.

Uses Debian's chromium (/usr/bin/chromium) driven by the `playwright` Python package; no browser
download (`playwright install` is never run). Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
import requests
from conftest import API_KEY, CP

CHROMIUM = os.environ.get("LANQUEUE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

try:
    from playwright.sync_api import Page, expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None  # type: ignore[assignment]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sync_playwright is None, reason="the playwright package is not installed (pip install playwright)"),
    pytest.mark.skipif(not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)),
                       reason=f"no chromium at {CHROMIUM} (apt-get install chromium)"),
    pytest.mark.timeout(240),
]

H = {"X-Api-Key": API_KEY}


def gcode_file(path: Path, moves: int = 80) -> Path:
    """A print of `moves` 100 mm moves at 10 mm/s: ~10 s each in real time, ~4 s at 200x."""
    lines = ["; test print", "G21", "G90", "G28", "G1 F600"]
    lines += [f"G1 X{100 if i % 2 == 0 else 0} Y10" for i in range(moves)]
    path.write_text("\n".join(lines) + "\n")
    return path


def state(url: str) -> dict:
    r = requests.get(url + CP + "/state/get", headers=H, timeout=5)
    r.raise_for_status()
    return r.json()


def local_jobs(url: str) -> list[dict]:
    return next(q for q in state(url)["queues"] if q["name"] == "local")["jobs"]


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"web-{name}.png"), full_page=True)


def row(page: Page, name: str):
    """The job row whose name field holds `name`."""
    return page.locator("li.job").filter(has=page.locator(f'input.job-name[value="{name}"]'))


@pytest.fixture
def browser_page():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 1800})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            yield page, errors
        finally:
            context.close()
            browser.close()


def test_print_cycle_reorder_delete_and_live_updates(node_process, tmp_path, browser_page):
    page, errors = browser_page
    node = node_process()
    url = node.url

    # --- the key from the address is kept and removed from the address bar ---------------------
    page.goto(f"{url}/?apikey={API_KEY}")
    expect(page.locator("#live")).to_have_attribute("data-state", "on", timeout=10_000)
    assert "apikey" not in page.url
    assert page.evaluate("localStorage.getItem('lanqueue.apikey')") == API_KEY
    expect(page.locator("#status-text")).to_contain_text("Inactive")
    expect(page.locator("#printer-state")).to_have_text("Operational", timeout=10_000)
    expect(page.locator("#temps")).to_contain_text("Bed")
    shot(page, "01-empty")

    # --- upload a file and add it as a job -------------------------------------------------------
    page.set_input_files("#add-file", str(gcode_file(tmp_path / "cube.gcode")))
    page.fill("#add-name", "Cube")
    page.fill("#add-count", "1")
    page.click("#add-submit")
    expect(row(page, "Cube")).to_have_count(1, timeout=10_000)
    jobs = local_jobs(url)
    assert [(j["name"], j["draft"], j["sets"][0]["path"]) for j in jobs] == [("Cube", False, "cube.gcode")]
    assert jobs[0]["sets"][0]["missing_file"] is False
    shot(page, "02-added")

    # --- start managing: it prints, then waits for the bed to be cleared -------------------------
    page.click("#toggle-active")
    expect(page.locator("#toggle-active")).to_have_text("Stop managing", timeout=10_000)
    expect(page.locator("#printer-state")).to_have_text("Printing", timeout=20_000)
    expect(page.locator("#printer-file")).to_have_text("cube.gcode")
    expect(page.locator("#status-text")).to_contain_text("Printing")
    shot(page, "03-printing")
    seen_progress = page.wait_for_function(
        "() => { const p = document.getElementById('printer-progress'); return p.value > 0 ? p.value : null }",
        timeout=20_000,
    ).json_value()
    assert 0 < seen_progress <= 100
    continue_button = page.locator('#needs-action button[data-action="continue"]')
    expect(continue_button).to_be_visible(timeout=30_000)
    expect(page.locator("#status-text")).to_contain_text("clear the bed")
    expect(page.locator("#history")).to_contain_text("success", timeout=10_000)
    expect(row(page, "Cube")).to_contain_text("all runs done")
    shot(page, "04-needs-action")
    continue_button.click()
    expect(page.locator("#needs-action")).to_be_hidden(timeout=15_000)
    expect(page.locator("#status-text")).not_to_contain_text("clear the bed")
    runs = requests.get(url + CP + "/history/get", headers=H, timeout=5).json()
    assert [(r["job_name"], r["result"]) for r in runs] == [("Cube", "success")]
    page.click("#toggle-active")
    expect(page.locator("#toggle-active")).to_have_text("Start managing", timeout=10_000)
    expect(page.locator("#status-text")).to_contain_text("Inactive")

    # --- a change made by another client shows within a second (server-sent events) -------------
    for name in ("A", "B", "C"):
        r = requests.post(url + CP + "/set/add", headers=H, timeout=5,
                          data={"path": "cube.gcode", "jobName": name, "jobDraft": "true"})
        assert r.ok
    t0 = time.monotonic()
    r = requests.post(url + CP + "/set/add", headers=H, timeout=5, data={"path": "cube.gcode", "jobName": "Outside"})
    assert r.ok
    # pushed by the node, no reload: the latency is measured (bench/web_bench.py reports it), the
    # bound here is generous so a loaded machine cannot fail the test
    expect(row(page, "Outside")).to_have_count(1, timeout=5_000)
    live_latency = time.monotonic() - t0
    print(f"another client's job appeared on the page after {live_latency:.2f} s")
    shot(page, "05-live-update")

    # --- reorder by dragging: C onto the upper half of A puts it before A ------------------------
    names = lambda: [j["name"] for j in local_jobs(url)]  # noqa: E731
    assert names() == ["Cube", "A", "B", "C", "Outside"]
    row(page, "C").locator(".grip").drag_to(row(page, "A"), target_position={"x": 40, "y": 5})
    deadline = time.monotonic() + 5
    while names() != ["Cube", "C", "A", "B", "Outside"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert names() == ["Cube", "C", "A", "B", "Outside"]
    # ... and Cube onto the lower half of Outside puts it at the end, once the page shows the
    # first move (a re-render during the drag would drop it)
    page.wait_for_function(
        """() => Array.from(document.querySelectorAll('ol.jobs[data-queue=local] input.job-name')).map(i => i.value).join(',')
             === 'Cube,C,A,B,Outside'""", timeout=5_000)
    box = row(page, "Outside").bounding_box()
    row(page, "Cube").locator(".grip").drag_to(row(page, "Outside"), target_position={"x": 40, "y": box["height"] - 5})
    deadline = time.monotonic() + 5
    while names() != ["C", "A", "B", "Outside", "Cube"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert names() == ["C", "A", "B", "Outside", "Cube"]
    expect(page.locator("ol.jobs[data-queue=local] input.job-name")).to_have_count(5)
    page.wait_for_function(
        """() => Array.from(document.querySelectorAll('ol.jobs[data-queue=local] input.job-name')).map(i => i.value).join(',')
             === 'C,A,B,Outside,Cube'""", timeout=5_000)
    shot(page, "06-reordered")

    # --- edit a name, a count and the draft flag -------------------------------------------------
    name_field = row(page, "B").locator("input.job-name")
    name_field.fill("B renamed")
    name_field.press("Enter")
    expect(row(page, "B renamed")).to_have_count(1, timeout=5_000)
    count_field = row(page, "B renamed").locator("input.job-count")
    count_field.fill("3")
    count_field.press("Enter")
    row(page, "B renamed").locator("input.job-draft").uncheck()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        b = next(j for j in local_jobs(url) if j["name"] == "B renamed")
        if b["count"] == 3 and not b["draft"]:
            break
        time.sleep(0.1)
    assert (b["count"], b["remaining"], b["draft"]) == (3, 3, False)

    # --- delete (two clicks: the first one asks) -------------------------------------------------
    delete = row(page, "A").locator("button.job-delete")
    delete.click()
    expect(delete).to_have_text("Really delete?")
    delete.click()
    expect(row(page, "A")).to_have_count(0, timeout=5_000)
    assert "A" not in names()
    shot(page, "07-deleted")

    # --- adopting a gone node's jobs before LAN adoption exists: an error toast, no crash --------
    page.evaluate("""() => {
        const li = document.createElement('li');
        li.innerHTML = '<button type="button" data-action="adopt" data-queue="LAN" data-peer="p1">Adopt</button>';
        document.getElementById('action-list').append(li);
        li.querySelector('button').click();
    }""")
    expect(page.locator(".toast.error").last).to_contain_text("Adopt", timeout=5_000)

    # --- clearing the history (two clicks) --------------------------------------------------------
    page.click("#history-reset")
    expect(page.locator("#history-reset")).to_have_text("Really clear?")
    page.click("#history-reset")
    expect(page.locator("#history")).to_contain_text("Nothing printed yet", timeout=5_000)

    assert errors == [], errors
    (ARTIFACTS / "web-live-latency.json").write_text(json.dumps({"seconds": live_latency}))


def test_key_is_asked_once_and_kept(node_process, browser_page):
    page, errors = browser_page
    node = node_process()
    page.goto(node.url + "/")
    dialog = page.locator("#key-dialog")
    expect(dialog).to_be_visible()
    page.fill("#key-input", "wrong")
    page.click("#key-save")
    expect(page.locator("#key-error")).to_contain_text("refused")
    page.fill("#key-input", API_KEY)
    page.click("#key-save")
    expect(dialog).to_be_hidden()
    expect(page.locator("#live")).to_have_attribute("data-state", "on", timeout=10_000)
    page.reload()
    expect(page.locator("#live")).to_have_attribute("data-state", "on", timeout=10_000)
    expect(dialog).to_be_hidden()
    # a narrow (phone) screen: one column, nothing wider than the screen
    page.set_viewport_size({"width": 390, "height": 800})
    requests.post(node.url + CP + "/set/add", headers=H, timeout=5,
                  data={"path": "a_rather_long_file_name_for_a_small_screen.gcode", "jobName": "Phone"})
    expect(row(page, "Phone")).to_have_count(1, timeout=5_000)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "08-phone")
    assert errors == [], errors


def test_lan_queue_peers_move_and_adopt(node_process, tmp_path, browser_page):
    """Two nodes sharing the LAN queue `farm`; the page of node B shows the queue and its peer,
    moves a local job into the LAN queue, and adopts node A's jobs after A is switched off."""
    from lan_helpers import cluster_ports, lan_args, lan_jobs, peers_online, post, upload, wait

    page, errors = browser_page
    pa, pb = cluster_ports(2)
    # a short lease TTL: a started node catches up with its peers before it acts on the queue
    # (the sync gate, about 15 s + two anti-entropy rounds of TTL/2), so keep those rounds short
    a = node_process(lan_args([pa, pb], pa, ttl=6), port=pa)
    b = node_process(lan_args([pa, pb], pb, ttl=6), port=pb)
    wait(lambda: peers_online(a, 1) and peers_online(b, 1), what="peers online")
    a_id = requests.get(a.url + "/lanqueue/peers", headers=H, timeout=5).json()["node_id"]

    page.goto(f"{b.url}/?apikey={API_KEY}")
    expect(page.locator("#live")).to_have_attribute("data-state", "on", timeout=10_000)
    farm = page.locator('section.queue[data-queue="farm"]')
    expect(farm).to_be_visible(timeout=10_000)
    expect(page.locator(f'#peers tr[data-node="{a_id}"]')).to_contain_text("online", timeout=10_000)

    # a local job moved into the LAN queue with the row's "Move to" picker
    page.set_input_files("#add-file", str(gcode_file(tmp_path / "shared.gcode", moves=4)))
    page.fill("#add-name", "Shared")
    page.check("#add-draft")
    page.click("#add-submit")
    expect(row(page, "Shared")).to_have_count(1, timeout=10_000)
    deadline = time.monotonic() + 60
    while True:  # refused (409, a toast) until B's sync gate opens: move again until it takes
        row(page, "Shared").locator("select.job-move").select_option("")
        row(page, "Shared").locator("select.job-move").select_option("farm")
        try:
            expect(farm.locator("li.job")).to_have_count(1, timeout=3_000)
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise
    expect(farm.locator('input.job-name[value="Shared"]')).to_have_count(1)
    wait(lambda: any(j["name"] == "Shared" for j in lan_jobs(a)), what="moved job replicated to a")

    # a job submitted on node A shows up on B's page
    upload(a, "from_a.gcode", gcode_file(tmp_path / "from_a.gcode", moves=4).read_bytes())
    post(a, CP + "/set/add", data={"path": "from_a.gcode", "queue": "farm", "jobName": "FromA", "jobDraft": "false"})
    expect(farm.locator("li.job")).to_have_count(2, timeout=10_000)
    expect(row(page, "FromA")).to_contain_text("home:")
    shot(page, "09-lan")

    # A is switched off: its job waits, the page says so and offers adoption
    a.kill()
    adopt = page.locator('#needs-action button[data-action="adopt"]')
    expect(adopt).to_be_visible(timeout=60_000)
    expect(page.locator("#needs-action")).to_contain_text("offline")
    expect(row(page, "FromA")).to_contain_text("waiting for its home")
    shot(page, "10-adopt")
    adopt.click()
    expect(page.locator(".toast").last).to_contain_text("adopted", timeout=10_000)
    expect(adopt).to_have_count(0, timeout=20_000)
    job = next(j for j in lan_jobs(b) if j["name"] == "FromA")
    assert job["home"] != a_id and job["home_online"]
    assert errors == [], errors


def test_etcd_queue_says_when_etcd_is_unreachable(node_process, tmp_path, browser_page):
    """A queue kept in etcd shows its jobs like any queue, and says on the page when this node
    cannot reach etcd (since when, what it means), then clears the note when etcd is back."""
    from etcd_server import start_cluster

    page, errors = browser_page
    cluster = start_cluster(tmp_path / "etcd")
    try:
        hosts = ",".join(e.removeprefix("http://") for e in cluster.endpoints)
        node = node_process(["--lan", f"site=etcd://{hosts}", "--lease-ttl", "6"])
        requests.post(node.url + "/api/files/local", headers=H, timeout=10,
                      files={"file": ("e.gcode", gcode_file(tmp_path / "e.gcode").read_bytes())}).raise_for_status()
        requests.post(node.url + CP + "/set/add", headers=H, timeout=10,
                      data={"path": "e.gcode", "queue": "site", "jobName": "InEtcd"}).raise_for_status()
        page.goto(f"{node.url}/?apikey={API_KEY}")
        section = page.locator('section.queue[data-queue="site"]')
        expect(section.locator("h2")).to_have_text("etcd queue: site", timeout=10_000)
        expect(row(page, "InEtcd")).to_have_count(1, timeout=10_000)
        note = section.locator(".note.link")
        expect(note).to_be_hidden()
        cluster.kill(0)
        expect(note).to_be_visible(timeout=20_000)
        expect(note).to_contain_text("etcd unreachable")
        expect(note).to_contain_text("no new job starts here")
        expect(page.locator('li[data-kind="gone"]')).to_have_count(0)  # nothing to adopt from etcd
        shot(page, "etcd-unreachable")
        cluster.start(0, state="existing")
        expect(note).to_be_hidden(timeout=30_000)
        assert errors == []
    finally:
        cluster.stop()
