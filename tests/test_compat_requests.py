"""A client written for the original Continuous Print plugin works unmodified against a node.

`ContinuousPrintClient` below is written the way the plugin's own `api_examples/` and users'
scripts are: Python `requests`, form-encoded bodies built from Python values (so booleans go out
as `True`/`False`, numbers as text, an empty `job` for "new job", lists as repeated fields),
`X-Api-Key`, and `.json()` on every answer. Nothing in it knows about lanqueue.
"""

from __future__ import annotations

import requests

from conftest import API_KEY


class ContinuousPrintClient:
    def __init__(self, base_url: str, api_key: str) -> None:
        self.base = base_url.rstrip("/") + "/plugin/continuousprint"
        self.headers = {"X-Api-Key": api_key}

    def _get(self, path):
        return requests.get(self.base + path, headers=self.headers, timeout=10).json()

    def _post(self, path, data=None, json=None):
        return requests.post(self.base + path, headers=self.headers, data=data, json=json, timeout=10).json()

    def get_state(self):
        return self._get("/state/get")

    def add_set(self, path, sd=False, count=1, job="", job_name="", job_draft=True, materials=None, profiles=None):
        data = dict(path=path, sd=sd, count=count, job=job, jobName=job_name, jobDraft=job_draft)
        if materials is not None:
            data["materials"] = materials
        if profiles is not None:
            data["profiles"] = profiles
        return self._post("/set/add", data=data)

    def set_active(self, active=True):
        return self._post("/set_active", data=dict(active=active))

    def set_external(self, data):
        return self._post("/automation/external", json=data)


def test_original_client_against_a_node(node_process):
    node = node_process()
    cp = ContinuousPrintClient(node.url, API_KEY)

    state = cp.get_state()
    assert state["active"] is False and isinstance(state["status"], str)
    assert [q["name"] for q in state["queues"]] == ["local"] and state["queues"][0]["jobs"] == []

    added = cp.add_set("example.gcode", sd=False, count=2, job="", job_name="Job1", job_draft=False,
                       materials=["PLA_red_#ff0000", "PLA_blue_#0000ff"], profiles=["Generic"])
    job_id = added["job_id"]
    assert isinstance(job_id, int)
    s = added["set_"]
    assert s["path"] == "example.gcode" and s["count"] == 2 and s["remaining"] == 2 and s["sd"] is False
    assert s["materials"] == ["PLA_red_#ff0000", "PLA_blue_#0000ff"]  # not split into characters
    assert s["profiles"] == ["Generic"]

    second = cp.add_set("other.gcode", sd=True, count=1, job=job_id)
    assert second["job_id"] == job_id and second["set_"]["sd"] is True

    jobs = cp.get_state()["queues"][0]["jobs"]
    assert len(jobs) == 1
    job = jobs[0]
    assert job["name"] == "Job1" and job["draft"] is False and job["count"] == 1 and job["remaining"] == 1
    assert job["acquired"] is False and isinstance(job["created"], int) and job["id"] == job_id
    assert [x["path"] for x in job["sets"]] == ["example.gcode", "other.gcode"]
    for x in job["sets"]:
        assert {"path", "count", "remaining", "materials", "profiles", "sd"} <= set(x)

    # without jobDraft a new job is a draft, as in the original
    draft = cp.add_set("draft.gcode")
    drafts = [j for j in cp.get_state()["queues"][0]["jobs"] if j["id"] == draft["job_id"]]
    assert drafts[0]["draft"] is True and drafts[0]["sets"][0]["count"] == 1

    on = cp.set_active(True)
    assert on["active"] is True and "queues" in on
    assert cp.get_state()["active"] is True
    off = cp.set_active(False)
    assert off["active"] is False and off["status"].startswith("Inactive")

    assert cp.set_external({"a": 1, "b": "hello"}) == "OK"
    assert cp.set_external({"nested": {"list": [1, 2, None]}}) == "OK"


def test_original_client_errors_are_json(node_process):
    node = node_process()
    cp = ContinuousPrintClient(node.url, API_KEY)
    assert "error" in cp.add_set("")  # missing path: 400 with a JSON error, not a 500
    assert "error" in cp.add_set("x.gcode", count="many")
    assert "error" in cp.add_set("x.gcode", job=12345)
    assert "error" in cp.set_active("perhaps")
    assert "error" in cp.set_external([1, 2])
    assert "error" in ContinuousPrintClient(node.url, "WRONG").get_state()
    assert cp.get_state()["queues"][0]["jobs"] == []
    r = requests.get(node.url + "/plugin/continuousprint/state/get", headers={"X-Api-Key": API_KEY}, timeout=10)
    assert r.headers["Content-Type"].startswith("application/json")
