"""kill -9 in the middle of a print: the run is aborted once, counts are not touched twice."""

from __future__ import annotations

import time

import requests

from conftest import API_KEY, CP

H = {"X-Api-Key": API_KEY}


def wait(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def test_kill_mid_print_records_one_aborted_run(node_process, tmp_path):
    node = node_process(["--virtual-speed", "20"])
    body = "\n".join(["G28"] + [f"G1 X{i % 100} Y{i % 50} F3000" for i in range(400)]) + "\n"
    r = requests.post(node.url + "/api/files/local", headers=H, files={"file": ("long.gcode", body)})
    assert r.status_code == 201
    r = requests.post(node.url + CP + "/set/add", headers=H, data={"path": "long.gcode", "count": "2", "jobDraft": "False"})
    jid = r.json()["job_id"]
    requests.post(node.url + CP + "/set_active", headers=H, data={"active": "True"})
    wait(lambda: requests.get(node.url + "/api/job", headers=H).json()["state"] == "Printing")
    wait(lambda: (requests.get(node.url + "/api/job", headers=H).json()["progress"]["completion"] or 0) > 5)
    node.kill()

    node.start()
    history = requests.get(node.url + CP + "/history/get", headers=H).json()
    assert [h["result"] for h in history] == ["aborted"]
    state = requests.get(node.url + CP + "/state/get", headers=H).json()
    assert state["active"] is False  # a restart never starts printing by itself unless --resume
    job = next(j for j in state["queues"][0]["jobs"] if j["id"] == jid)
    assert (job["sets"][0]["remaining"], job["sets"][0]["completed"]) == (2, 0)

    # a second restart does not record the run again
    node.kill()
    node.start()
    history = requests.get(node.url + CP + "/history/get", headers=H).json()
    assert [h["result"] for h in history] == ["aborted"]


def test_resume_option_restarts_managing_after_a_restart(node_process):
    node = node_process(["--resume"])
    requests.post(node.url + CP + "/set_active", headers=H, data={"active": "True"})
    node.kill()
    node.start()
    assert requests.get(node.url + CP + "/state/get", headers=H).json()["active"] is True
