"""The queue timeline (lanqueue/timeline.py): pure, so checked with hand-made queues."""

from __future__ import annotations

from lanqueue.timeline import PrinterLoad, job_seconds, plan


def job(jid, name, sets, *, remaining=1, count=None, draft=False):
    return {"id": jid, "name": name, "remaining": remaining, "count": count or remaining, "draft": draft,
            "sets": sets}


def s(est, remaining=1, count=None, profiles=()):
    return {"remaining": remaining, "count": count if count is not None else remaining,
            "profiles": list(profiles), "gcode": None if est is None else {"estimated_time_s": est}}


def test_job_seconds_counts_this_run_and_later_runs():
    # this run: 2 copies of a 100 s set left; two more runs of 3 copies each
    assert job_seconds(job(1, "a", [s(100, remaining=2, count=3)], remaining=3)) == (800.0, False)
    # one copy is on the printer now: counted by the printer's current work instead
    assert job_seconds(job(1, "a", [s(100, remaining=2, count=3)], remaining=3), in_progress=True) == (700.0, False)
    assert job_seconds(job(1, "a", [s(None), s(50)])) == (50.0, True)


def test_jobs_go_to_the_printer_free_first_in_queue_order():
    printers = [PrinterLoad("A", "alpha", busy_s=300), PrinterLoad("B", "beta", busy_s=0)]
    out = plan([job(1, "one", [s(600)]), job(2, "two", [s(100)]), job(3, "three", [s(100)])], printers)
    assert [(f.name, f.node_id, f.start_s, f.end_s) for f in out] == [
        ("one", "B", 0, 600),      # B is idle
        ("two", "A", 300, 400),    # A is free at 300
        ("three", "A", 400, 500),  # A again (B is busy until 600)
    ]


def test_a_held_job_stays_on_its_printer_and_drafts_and_done_jobs_are_left_out():
    printers = [PrinterLoad("A", "alpha", busy_s=50, holding=frozenset({"7"})), PrinterLoad("B", "beta", busy_s=0)]
    jobs = [job("d", "draft", [s(10)], draft=True), job("x", "done", [s(10)], remaining=0),
            job(8, "next", [s(100)]), job(7, "held", [s(100, remaining=2)])]
    out = plan(jobs, printers)
    assert [(f.name, f.node_id, f.start_s, f.end_s) for f in out] == [
        ("next", "B", 0, 100),
        ("held", "A", 0, 150),  # 50 s of the copy in progress, then one more copy of 100 s
    ]


def test_unknown_estimates_make_the_end_unknown_and_the_printer_is_avoided_after():
    printers = [PrinterLoad("A", "alpha", busy_s=0), PrinterLoad("B", "beta", busy_s=1000)]
    out = plan([job(1, "mystery", [s(None)]), job(2, "known", [s(60)]), job(3, "later", [s(60)])], printers)
    assert (out[0].node_id, out[0].end_s, out[0].unknown) == ("A", None, True)
    # A's free time is unknown now: B (free at 1000) is preferred
    assert (out[1].node_id, out[1].start_s, out[1].end_s) == ("B", 1000, 1060)
    assert (out[2].node_id, out[2].start_s) == ("B", 1060)
    assert out[0].to_json(now=5000.0)["done_at"] is None
    assert out[1].to_json(now=5000.0)["done_at"] == 6060.0


def test_profiles_limit_the_printers_and_no_printer_is_said():
    printers = [PrinterLoad("A", "alpha", profile="MK3"), PrinterLoad("B", "beta", profile="MINI")]
    out = plan([job(1, "mini only", [s(10, profiles=["MINI"])]), job(2, "xl only", [s(10, profiles=["XL"])])], printers)
    assert out[0].node_id == "B"
    assert (out[1].node_id, out[1].printer, out[1].end_s) == (None, None, None)
    assert plan([job(1, "a", [s(10)])], [])[0].node_id is None


def test_materials_follow_the_drivers_rule():
    printers = [PrinterLoad("A", "alpha", materials=("PLA_red_#ff0000",)),
                PrinterLoad("B", "beta", busy_s=500, materials=("PETG_black_#000000",))]
    red = dict(s(60), materials=["PLA_red_#ff0000"])
    black = dict(s(60), materials=["PETG_black_#000000"])
    file_petg = s(60)
    file_petg["gcode"]["filament_type"] = ["PETG"]  # no material named: the file's own type counts
    out = plan([job(1, "red", [red]), job(2, "black", [black]), job(3, "petg file", [file_petg]),
                job(4, "blue", [dict(s(60), materials=["PLA_blue_#0000ff"])])], printers)
    assert [(f.name, f.node_id, f.start_s) for f in out] == [
        ("red", "A", 0), ("black", "B", 500), ("petg file", "B", 560), ("blue", None, None)]
