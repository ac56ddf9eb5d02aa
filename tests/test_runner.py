"""The driver state machine alone: events in, actions out, no printer, no clock."""

from __future__ import annotations

import pytest

from lanqueue import runner as r

JOB = r.JobRef("local", 1, "J", 10, "a.gcode")


def drive(driver: r.Driver, *events: r.Event) -> list[r.Action]:
    out: list[r.Action] = []
    for e in events:
        out.extend(driver.handle(e))
    return out


def ready_driver(**settings) -> r.Driver:
    d = r.Driver(r.DriverSettings(**settings))
    d.handle(r.PrinterReady())
    return d


def printing(d: r.Driver) -> None:
    drive(d, r.Activate(), r.ScriptsDone(r.EV_ACTIVATE), r.JobFound(JOB), r.ScriptsDone(r.EV_START), r.PrintStarted())
    assert d.state == r.DriverState.PRINTING


def test_full_cycle_actions_in_order():
    d = ready_driver()
    assert drive(d, r.Activate()) == [r.RunScripts(r.EV_ACTIVATE)]
    assert drive(d, r.ScriptsDone(r.EV_ACTIVATE)) == [r.FindJob()]
    assert drive(d, r.JobFound(JOB)) == [r.RunScripts(r.EV_START, JOB)]
    assert drive(d, r.ScriptsDone(r.EV_START)) == [r.StartPrint(JOB)]
    assert drive(d, r.PrintStarted(), r.PrintSucceeded()) == [
        r.RecordResult(JOB, "success"), r.ReleaseJob(JOB), r.RunScripts(r.EV_SUCCESS, JOB)]
    assert drive(d, r.ScriptsDone(r.EV_SUCCESS)) == [r.FindJob()]
    assert drive(d, r.NoJob()) == [r.RunScripts(r.EV_FINISH)]
    assert drive(d, r.ScriptsDone(r.EV_FINISH)) == []
    assert d.state == r.DriverState.IDLE and d.status.startswith("Idle")


def test_inactive_status_texts_match_the_original():
    d = r.Driver()
    assert (d.active, d.status, d.status_type) == (False, "Inactive (start managing to print from the queue)", "NORMAL")


def test_activation_waits_for_the_printer():
    d = r.Driver()
    assert drive(d, r.Activate()) == [] and d.state == r.DriverState.WAITING_PRINTER
    assert d.active and d.status_type == "INIT"
    assert drive(d, r.PrinterReady()) == [r.RunScripts(r.EV_ACTIVATE)]


def test_waiting_for_a_person_needs_action():
    d = ready_driver()
    printing(d)
    drive(d, r.PrintSucceeded(), r.WaitingForPerson(r.EV_SUCCESS))
    assert d.status_type == "NEEDS_ACTION" and "clear the bed" in d.status
    drive(d, r.PersonContinued())
    assert d.status_type == "NORMAL"


def test_failures_retry_then_stop_with_error():
    d = ready_driver(max_retries=2)
    printing(d)
    for attempt in range(2):
        actions = drive(d, r.PrintFailed("thermal runaway"))
        assert r.RecordResult(JOB, "failure", "thermal runaway") in actions
        assert actions[-1] == r.RunScripts(r.EV_SUCCESS, JOB)
        drive(d, r.ScriptsDone(r.EV_SUCCESS), r.JobFound(JOB), r.ScriptsDone(r.EV_START), r.PrintStarted())
    actions = drive(d, r.PrintFailed("thermal runaway"))
    assert not d.active and d.status_type == "ERROR" and "thermal runaway" in d.status
    assert not any(isinstance(a, r.RunScripts) for a in actions)


def test_failure_with_printer_gone_waits_for_it_before_retrying():
    d = ready_driver()
    printing(d)
    d.handle(r.PrinterLost("port vanished"))
    assert drive(d, r.PrintFailed("port vanished"))[-1] == r.ReleaseJob(JOB)
    assert d.state == r.DriverState.RECOVERING and d.status_type == "NEEDS_ACTION"
    assert drive(d, r.PrinterReady()) == [r.RunScripts(r.EV_SUCCESS, JOB)]


def test_success_resets_failure_count():
    d = ready_driver(max_retries=1)
    printing(d)
    drive(d, r.PrintFailed("x"), r.ScriptsDone(r.EV_SUCCESS), r.JobFound(JOB), r.ScriptsDone(r.EV_START), r.PrintStarted(), r.PrintSucceeded())
    assert d.failures == 0


def test_user_cancel_records_aborted_and_deactivates():
    d = ready_driver()
    printing(d)
    actions = drive(d, r.PrintCancelled())
    assert actions == [r.RecordResult(JOB, "aborted", "cancelled by the user"), r.ReleaseJob(JOB), r.RunScripts(r.EV_CANCEL, JOB)]
    drive(d, r.ScriptsDone(r.EV_CANCEL))
    assert not d.active


def test_deactivate_during_print_lets_it_finish_unmanaged():
    d = ready_driver()
    printing(d)
    assert drive(d, r.Deactivate()) == []
    assert not d.active and "unmanaged" in d.status
    assert drive(d, r.PrintSucceeded()) == [r.RecordResult(JOB, "success"), r.ReleaseJob(JOB)]
    assert d.status == "Inactive (start managing to print from the queue)"
    assert drive(d, r.PrintSucceeded()) == []  # nothing more to record


def test_deactivate_when_idle_runs_deactivate_scripts_once():
    d = ready_driver()
    drive(d, r.Activate(), r.ScriptsDone(r.EV_ACTIVATE), r.NoJob())
    assert drive(d, r.Deactivate()) == [r.RunScripts(r.EV_DEACTIVATE)]
    assert drive(d, r.Deactivate()) == []


def test_idle_rechecks_on_queue_change_and_periodically():
    d = ready_driver(recheck_every=5.0)
    drive(d, r.Activate(), r.ScriptsDone(r.EV_ACTIVATE), r.NoJob())
    assert drive(d, r.QueueChanged()) == [r.FindJob()]
    drive(d, r.NoJob())
    assert drive(d, r.Tick(1.0)) == []
    assert drive(d, r.Tick(6.0)) == [r.FindJob()]


def test_nothing_printable_announces_awaiting_material_once():
    d = ready_driver()
    drive(d, r.Activate(), r.ScriptsDone(r.EV_ACTIVATE))
    assert drive(d, r.NoJob("1 job(s) need another material")) == [r.RunScripts(r.EV_AWAITING_MATERIAL)]
    drive(d, r.QueueChanged())
    assert drive(d, r.NoJob("1 job(s) need another material")) == []


@pytest.mark.parametrize("below,reading,expect_clear", [(35.0, 30.0, True), (35.0, 50.0, False)])
def test_managed_cooldown_waits_for_the_bed(below, reading, expect_clear):
    d = ready_driver(cooldown=True, cooldown_below=below, cooldown_timeout=600)
    printing(d)
    assert drive(d, r.PrintSucceeded())[-1] == r.RunScripts(r.EV_COOLDOWN, JOB)
    drive(d, r.ScriptsDone(r.EV_COOLDOWN))
    actions = drive(d, r.BedTemperature(reading))
    assert (actions == [r.RunScripts(r.EV_SUCCESS, JOB)]) is expect_clear


def test_cooldown_timeout_clears_anyway():
    d = ready_driver(cooldown=True, cooldown_timeout=60)
    drive(d, r.Tick(100.0))
    printing(d)
    drive(d, r.PrintSucceeded(), r.ScriptsDone(r.EV_COOLDOWN), r.BedTemperature(80.0))
    assert drive(d, r.Tick(130.0)) == []
    assert drive(d, r.Tick(161.0)) == [r.RunScripts(r.EV_SUCCESS, JOB)]


def test_unexpected_events_are_ignored_and_counted():
    d = ready_driver()
    assert drive(d, r.PrintSucceeded(), r.JobFound(JOB)) == []
    assert d.ignored == 2 and d.state == r.DriverState.INACTIVE
