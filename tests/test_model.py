"""The counting rules of reference-behaviour.md, on the pure model."""

from __future__ import annotations

from hypothesis import given, strategies as st

from lanqueue.model import (
    Job,
    PrintSet,
    Strategy,
    apply_success,
    choose_next,
    next_set,
    rank_between,
    reset_job,
    set_printable,
)


def make_job(sets: list[tuple[str, int]], count: int = 1, **kw) -> Job:
    return Job(
        id=1, queue="local", name="j", count=count, remaining=count,
        sets=[PrintSet(id=i, path=p, count=c, remaining=c, rank=float(i)) for i, (p, c) in enumerate(sets)],
        **kw,
    )


def print_order(job: Job) -> str:
    out = []
    while (s := next_set(job)) is not None:
        out.append(s.path)
        job = apply_success(job, s.id)
        assert len(out) < 1000
    return "".join(out)


def test_sets_print_in_rank_order_count_times():
    assert print_order(make_job([("A", 5), ("B", 5)], count=1)) == "AAAAABBBBB"


def test_job_count_repeats_all_sets():
    assert print_order(make_job([("A", 1), ("B", 1)], count=5)) == "ABABABABAB"


def test_issue_example_order():
    assert print_order(make_job([("A", 2), ("B", 1)], count=2)) == "AABAAB"


def test_job_runs_reset_sets_and_count_down():
    job = make_job([("A", 1), ("B", 2)], count=2)
    job = apply_success(job, 0)
    assert (job.remaining, job.sets[0].remaining, job.sets[0].completed) == (2, 0, 1)
    job = apply_success(apply_success(job, 1), 1)
    # the first run is done: one run left and every set starts over
    assert job.remaining == 1
    assert [s.remaining for s in job.sets] == [1, 2]
    assert [s.completed for s in job.sets] == [1, 2]


def test_done_job_prints_nothing_and_draft_never_prints():
    job = make_job([("A", 1)])
    job = apply_success(job, 0)
    assert job.done and next_set(job) is None
    assert next_set(make_job([("A", 1)], draft=True)) is None


def test_reset_starts_over():
    job = apply_success(make_job([("A", 2)], count=3), 0)
    again = reset_job(job)
    assert again.remaining == 3 and again.sets[0].remaining == 2 and again.sets[0].completed == 0


def test_apply_success_does_not_change_its_input():
    job = make_job([("A", 2)])
    apply_success(job, 0)
    assert job.sets[0].remaining == 2


def test_materials_and_profiles_decide_printability():
    s = PrintSet(id=1, path="a", materials=["PLA_red_#ff0000", None], profiles=["MK3"])
    assert set_printable(s, "MK3", ["PLA_red_#ff0000", "ABS_black_#000000"])
    assert not set_printable(s, "MK3", ["PLA_blue_#0000ff"])
    assert not set_printable(s, "Ender", ["PLA_red_#ff0000"])
    assert not set_printable(s, "MK3", [])
    assert set_printable(PrintSet(id=2, path="b"), "anything", [])


def test_missing_file_is_not_printable():
    assert not set_printable(PrintSet(id=1, path="a", missing_file=True), "p", [])


def test_choose_next_skips_unprintable_jobs():
    red = make_job([("R", 1)])
    red.sets[0].materials = ["PLA_red_#ff0000"]
    plain = make_job([("P", 1)])
    plain.id, plain.rank = 2, 5.0
    job, s = choose_next([red, plain], "Generic", [None]) or (None, None)
    assert job is plain and s.path == "P"
    job, s = choose_next([red, plain], "Generic", ["PLA_red_#ff0000"]) or (None, None)
    assert job is red


def test_least_manual_prefers_jobs_needing_no_material_change():
    mixed = make_job([("A", 1), ("B", 1)])
    mixed.sets[1].materials = ["PETG_grey_#888888"]
    simple = make_job([("C", 1)])
    simple.id, simple.rank = 2, 9.0
    loaded = ["PLA_red_#ff0000"]
    assert choose_next([mixed, simple], "G", loaded, Strategy.IN_ORDER)[0] is mixed
    assert choose_next([mixed, simple], "G", loaded, Strategy.LEAST_MANUAL)[0] is simple


@given(st.lists(st.integers(0, 4), min_size=1, max_size=4), st.integers(0, 4))
def test_total_prints_equal_counts(set_counts, job_count):
    job = make_job([(chr(65 + i), c) for i, c in enumerate(set_counts)], count=job_count)
    order = print_order(job)
    expected = job_count * sum(set_counts) if sum(set_counts) else 0
    assert len(order) == expected


@given(st.one_of(st.none(), st.floats(-1e6, 1e6)), st.one_of(st.none(), st.floats(-1e6, 1e6)))
def test_rank_between_sorts_between(a, b):
    if a is not None and b is not None and not a < b - 1e-6:
        return
    r = rank_between(a, b)
    assert a is None or r > a
    assert b is None or r < b
