"""make run keeps the ports its programs will listen on clear of the ports it
picks for servers started before them (a NATS node's monitor and cluster ports),
and never picks one port for two servers."""

from __future__ import annotations

from deploy.localstack import REPLICA_PORT_STEP, _programs_ports, free_port


def test_every_replica_and_events_process_port_is_kept_clear() -> None:
    env = {
        "COCREATE_IDEAS_ADDR": "127.0.0.1:41000",
        "COCREATE_VOTES_ADDR": "127.0.0.1:42000",
        "COCREATE_REWARDS_ADDR": "127.0.0.1:43000",
        "COCREATE_IDEAS_METRICS_ADDR": "127.0.0.1:44000",
        "COCREATE_VOTES_METRICS_ADDR": "127.0.0.1:45000",
        "COCREATE_REWARDS_METRICS_ADDR": "",  # no metrics endpoint
        "COCREATE_GATEWAY_ADDR": "127.0.0.1:46000",
    }
    kept = _programs_ports(env, replicas=2)
    for first in (41000, 42000, 43000, 44000, 45000):
        # two replicas, and room for an events process above the last
        assert {first, first + REPLICA_PORT_STEP, first + 2 * REPLICA_PORT_STEP} <= kept
    assert 46000 in kept
    assert 0 not in kept


def test_any_free_port_address_keeps_nothing_clear() -> None:
    env = {
        f"COCREATE_{name}": "127.0.0.1:0"
        for name in (
            "IDEAS_ADDR", "VOTES_ADDR", "REWARDS_ADDR", "GATEWAY_ADDR",
            "IDEAS_METRICS_ADDR", "VOTES_METRICS_ADDR", "REWARDS_METRICS_ADDR",
        )
    }  # fmt: skip
    assert _programs_ports(env, replicas=1) == set()


def test_a_port_is_handed_out_once() -> None:
    """The kernel offers a port that nothing has bound yet again; two servers
    given it would collide (a test's metrics port was once a NATS node's)."""
    ports = [free_port() for _ in range(3000)]
    assert len(set(ports)) == len(ports)
