"""Membership (SWIM) and record dissemination (fan-out + anti-entropy) in a simulated farm of
10, 100 and 1,000 nodes, 5 % of them crashed and 1 % of messages lost (tests/gossipsim.py).

What must hold as the farm grows: a record reaches every live node within a number of rounds
that grows like log N; the messages each node sends per round stay bounded; crashed nodes are
found dead by everyone and no live node is."""

from __future__ import annotations

import math

import gossipsim
import pytest


def check(r: gossipsim.Result) -> None:
    assert r.spread_round is not None, f"N={r.n}: the record never reached every live node"
    assert r.spread_round <= 2 * math.log2(r.n) + 2, f"N={r.n}: {r.spread_round} rounds is not O(log N)"
    assert r.dead_round is not None, f"N={r.n}: crashed nodes were not all found dead"
    assert r.false_dead == 0, f"N={r.n}: {r.false_dead} live nodes believed dead"
    assert r.max_messages_node_round <= 6, f"N={r.n}: {r.max_messages_node_round:.1f} messages per node per round"


@pytest.mark.parametrize("n", [10, 100])
def test_small_farms(n: int) -> None:
    for seed in (1, 2, 3):
        check(gossipsim.run(n, seed=seed))


@pytest.mark.slow
def test_curve_to_a_thousand_nodes(capsys: pytest.CaptureFixture[str]) -> None:
    results = [gossipsim.run(n, seed=7) for n in (10, 100, 1000)]
    for r in results:
        check(r)
    small, large = results[0], results[-1]
    # per node cost does not grow with the farm (100x the nodes, at most 1.5x the messages)
    assert large.messages_per_node_round <= 1.5 * small.messages_per_node_round
    with capsys.disabled():
        print("\n  N     rounds to all   rounds to find crashed   msgs/node/round (max)")
        for r in results:
            print(f"  {r.n:<5} {r.spread_round:<15} {r.dead_round:<24} "
                  f"{r.messages_per_node_round:.2f} ({r.max_messages_node_round:.2f})")


def test_the_checks_can_fail() -> None:
    """Without forwarding and anti-entropy a record stays with the home's first pushes; without
    indirect probes and suspicion, loss makes live nodes dead: the checks above catch both."""
    silent = gossipsim.run(100, seed=1, fanout=1, ae_every=10**6, rounds=30)
    assert silent.spread_round is None or silent.spread_round > 2 * math.log2(100) + 2
    from lanqueue.discovery.swim import SwimSettings

    harsh = gossipsim.run(100, seed=1, loss=0.2, rounds=40,
                          settings=SwimSettings(indirect=0, suspect_periods=1))
    assert harsh.false_dead > 0
