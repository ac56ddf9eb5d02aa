"""The pure peer table: liveness with a fake clock (time is passed in, nothing sleeps)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lanqueue.discovery.peers import (
    BadPeerInfo,
    PeerAppeared,
    PeerChanged,
    PeerGone,
    PeerInfo,
    PeerOffline,
    PeerOnline,
    PeerStatus,
    PeerTable,
)


def info(node_id: str = "b", *, port: int = 5001, protocol: int = 1, queues=("q",), addr="10.0.0.2", name=None) -> PeerInfo:
    return PeerInfo(
        node_id=node_id,
        name=name or f"node-{node_id}",
        protocol=protocol,
        api_port=port,
        profile="MK3",
        queues=tuple(queues),
        addresses=(addr,) if addr else (),
    )


def kinds(events) -> list[str]:
    return [type(e).__name__ for e in events]


def table(**kw) -> PeerTable:
    kw.setdefault("max_missed", 3)
    kw.setdefault("offline_after", 7.0)
    kw.setdefault("forget_after", 100.0)
    return PeerTable("a", 1, **kw)


def test_mdns_appearance_is_online_and_ignores_self():
    t = table()
    assert t.observe_mdns(info("a"), 0.0) == []
    events = t.observe_mdns(info("b"), 0.0)
    assert kinds(events) == ["PeerAppeared"]
    peer = events[0].peer
    assert peer.status is PeerStatus.ONLINE and peer.trusted
    assert peer.base_url == "http://10.0.0.2:5001"
    assert t.observe_mdns(info("b"), 1.0) == []  # same info: nothing to say


def test_missed_heartbeats_take_peer_offline_and_an_answer_brings_it_back():
    t = table()
    t.observe_mdns(info(), 0.0)
    assert t.heartbeat_failed("b", 2.0) == []
    assert t.heartbeat_failed("b", 4.0) == []
    events = t.heartbeat_failed("b", 6.0)
    assert kinds(events) == ["PeerOffline"] and events[0].reason == "heartbeat"
    assert t.get("b").status is PeerStatus.OFFLINE
    assert t.online_peers() == []
    assert t.heartbeat_failed("b", 8.0) == []  # already offline: no repeat
    events = t.heartbeat_ok("b", info(addr=None), 10.0, address="10.0.0.2")
    assert kinds(events) == ["PeerOnline"]
    assert t.get("b").missed == 0


def test_success_resets_the_miss_count():
    t = table()
    t.observe_mdns(info(), 0.0)
    t.heartbeat_failed("b", 1.0)
    t.heartbeat_failed("b", 2.0)
    t.heartbeat_ok("b", info(addr=None), 3.0, address="10.0.0.2")
    assert t.heartbeat_failed("b", 4.0) == []
    assert t.get("b").online


def test_silence_goes_offline_on_tick_then_forgotten():
    t = table()
    t.observe_mdns(info(), 0.0)
    assert t.tick(7.0) == []
    events = t.tick(7.5)
    assert kinds(events) == ["PeerOffline"]
    assert t.tick(100.0) == []
    events = t.tick(108.0)
    assert kinds(events) == ["PeerGone"]
    assert len(t) == 0


def test_mdns_does_not_revive_an_offline_peer_only_heartbeats_do():
    t = table()
    t.observe_mdns(info(), 0.0)
    t.tick(50.0)
    assert not t.get("b").online
    events = t.observe_mdns(info(port=6000), 51.0)
    assert kinds(events) == ["PeerChanged"]
    assert not t.get("b").online
    # the new port is where the next heartbeat goes
    assert [(x.host, x.port) for x in t.targets()] == [("10.0.0.2", 6000)]


def test_goodbye_is_offline_at_once():
    t = table()
    t.observe_mdns(info(), 0.0)
    events = t.mdns_removed("b", 1.0)
    assert kinds(events) == ["PeerOffline"] and events[0].reason == "goodbye"
    assert t.mdns_removed("b", 1.0) == []
    assert t.mdns_removed("zzz", 1.0) == []


def test_changes_are_reported_with_old_info():
    t = table()
    t.observe_mdns(info(), 0.0)
    events = t.heartbeat_ok("b", info(queues=("q", "r"), addr=None), 1.0, address="10.0.0.2")
    assert kinds(events) == ["PeerChanged"]
    assert events[0].old.queues == ("q",)
    assert events[0].peer.info.queues == ("q", "r")
    assert t.online_peers("r")[0].node_id == "b"
    assert t.online_peers("nope") == []


def test_other_protocol_version_is_listed_but_not_trusted():
    t = table()
    t.observe_mdns(info("c", protocol=2), 0.0)
    snap = t.snapshot(0.0)
    assert snap[0]["trusted"] is False and snap[0]["status"] == "online"
    assert t.online_peers() == []


def test_static_peer_is_targeted_until_it_answers_and_never_forgotten():
    t = table()
    t.add_static("192.168.1.9", 5000)
    assert [(x.host, x.port, x.node_id) for x in t.targets()] == [("192.168.1.9", 5000, None)]
    events = t.heartbeat_ok("", info("s", port=5000, addr=None), 1.0, address="192.168.1.9", port=5000)
    assert kinds(events) == ["PeerAppeared"]
    peer = t.get("s")
    assert peer.static and peer.address == "192.168.1.9"
    assert [(x.host, x.node_id) for x in t.targets()] == [("192.168.1.9", "s")]
    t.tick(50.0)
    assert kinds(t.tick(10_000.0)) == []
    assert t.get("s") is not None and not t.get("s").online


def test_failed_heartbeat_rotates_through_advertised_addresses():
    t = table()
    t.observe_mdns(PeerInfo("b", "b", 1, 5000, addresses=("10.0.0.2", "172.17.0.1")), 0.0)
    assert t.get("b").address == "10.0.0.2"
    t.heartbeat_failed("b", 1.0)
    assert t.get("b").address == "172.17.0.1"
    t.heartbeat_ok("b", PeerInfo("b", "b", 1, 5000), 2.0, address="172.17.0.1")
    assert t.get("b").address == "172.17.0.1" and t.get("b").online


def test_another_node_answering_at_an_address_counts_as_a_miss_for_the_old_one():
    t = table(max_missed=1)
    t.observe_mdns(info("b"), 0.0)
    events = t.heartbeat_ok("b", info("c", addr=None), 1.0, address="10.0.0.2")
    assert kinds(events) == ["PeerOffline", "PeerAppeared"]


def test_contacts_are_targeted_then_expire():
    t = table()
    t.add_contact("z", "10.0.0.7", 5000, 0.0)
    assert [(x.host, x.port) for x in t.targets()] == [("10.0.0.7", 5000)]
    t.tick(31.0)
    assert t.targets() == []
    t.add_contact("a", "10.0.0.1", 5000, 0.0)  # ourselves
    assert t.targets() == []


def test_table_is_bounded_and_only_evicts_offline_peers():
    t = table(max_peers=2)
    t.observe_mdns(info("b"), 0.0)
    t.observe_mdns(info("c"), 0.0)
    assert t.observe_mdns(info("d"), 0.0) == []
    assert t.dropped == 1 and len(t) == 2
    t.mdns_removed("b", 1.0)
    events = t.observe_mdns(info("d"), 2.0)
    assert kinds(events) == ["PeerGone", "PeerAppeared"]
    assert {p.node_id for p in t.peers()} == {"c", "d"}


def test_txt_round_trip_and_queue_escaping():
    i = PeerInfo("n1", "Prusa Ünö", 1, 5000, "MK3S", ("a,b", "100%", "plain"))
    props = {k.encode(): v.encode() for k, v in i.to_txt().items()}
    back = PeerInfo.from_txt(props, ("10.0.0.5",))
    assert back == PeerInfo("n1", "Prusa Ünö", 1, 5000, "MK3S", ("a,b", "100%", "plain"), ("10.0.0.5",))


def test_txt_too_many_queues_fits_in_255_bytes_and_says_so():
    i = PeerInfo("n1", "x", 1, 5000, "", tuple(f"queue-number-{n}" for n in range(40)))
    txt = i.to_txt()
    assert len(("queues=" + txt["queues"]).encode()) <= 255
    assert txt["queues_more"] == "1"
    assert "secret" not in " ".join(txt)


@pytest.mark.parametrize(
    "obj",
    [
        None,
        [],
        {"node_id": "x"},
        {"node_id": "../etc", "protocol": 1, "api_port": 5000},
        {"node_id": "x", "protocol": 1, "api_port": 70000},
        {"node_id": "x", "protocol": True, "api_port": 5000},
        {"node_id": "x", "protocol": 1, "api_port": 5000, "queues": "q"},
        {"node_id": "x", "protocol": 1, "api_port": 5000, "queues": ["q"] * 65},
        {"node_id": "x" * 55, "protocol": 1, "api_port": 5000},
    ],
)
def test_bad_hello_is_a_remote_error(obj):
    with pytest.raises(BadPeerInfo):
        PeerInfo.from_hello(obj)


@given(st.dictionaries(st.binary(max_size=20), st.one_of(st.none(), st.binary(max_size=300)), max_size=10))
def test_any_txt_gives_info_or_bad_peer_info(props):
    try:
        PeerInfo.from_txt(props)
    except BadPeerInfo:
        pass


_ops = st.lists(
    st.tuples(
        st.sampled_from(["mdns", "gone", "ok", "fail", "tick"]),
        st.sampled_from(["b", "c", "d", "e"]),
        st.floats(min_value=0, max_value=20),
    ),
    max_size=60,
)


@given(_ops)
def test_events_agree_with_status_and_table_stays_bounded(ops):
    """Whatever happens, each event matches the new status, and the table never overflows."""
    t = table(max_peers=3)
    now = 0.0
    for op, node, dt in ops:
        now += dt
        before = t.get(node)
        if op == "mdns":
            events = t.observe_mdns(info(node), now)
        elif op == "gone":
            events = t.mdns_removed(node, now)
        elif op == "ok":
            events = t.heartbeat_ok(node, info(node, addr=None), now, address="10.0.0.2")
        elif op == "fail":
            events = t.heartbeat_failed(node, now)
        else:
            events = t.tick(now)
        assert len(t) <= 3
        for e in events:
            current = t.get(e.peer.node_id)
            if isinstance(e, PeerOnline):
                assert current is not None and current.online
            if isinstance(e, PeerOffline):
                assert current is not None and not current.online
            if isinstance(e, PeerGone):
                assert current is None
            if isinstance(e, PeerAppeared):
                assert current is not None and current.online
            if isinstance(e, PeerChanged):
                assert e.old != e.peer.info
        if op == "ok" and before is not None and not before.online and t.get(node) is not None:
            assert t.get(node).online


def test_static_peer_behind_a_port_mapping_is_reached_where_it_answered():
    t = table()
    t.add_static("192.168.1.9", 8080)  # container publishes its 5000 as 8080
    t.heartbeat_ok("", info("s", port=5000, addr=None), 1.0, address="192.168.1.9", port=8080)
    assert [(x.host, x.port, x.node_id) for x in t.targets()] == [("192.168.1.9", 8080, "s")]
    peer = t.get("s")
    assert peer.base_url == "http://192.168.1.9:8080" and peer.info.api_port == 5000


def test_longest_node_id_still_makes_a_valid_instance_label():
    from lanqueue.discovery.info import check_node_id
    from lanqueue.discovery.mdns import instance_name

    check_node_id("x" * 54)
    assert len(instance_name("x" * 54).split(".")[0]) <= 63
    for bad in ["x" * 55, "", "a b", "-lead", "a.b"]:
        with pytest.raises(ValueError):
            check_node_id(bad)
