"""Pin the public API so a refactor never breaks users by accident."""

from __future__ import annotations

import importlib

import pytest

PUBLIC = {
    "zkpoll": ["Cycle", "WorkGroup", "WorkGroupError", "ZkpollError", "__version__"],
    "zkpoll.work": ["Cycle", "CycleCallback", "Keys", "WorkGroup"],
    "zkpoll.coordination": ["BackendURL", "ClockEstimate", "Coordinator", "Handoff",
                            "HandoffCallback", "HashRing", "Member", "Membership", "Record",
                            "RecordWrite", "SessionState", "get_coordinator", "make_member_id",
                            "parse_backend_url", "register_opts"],
    "zkpoll.polling": ["CREDENTIAL_SCHEMES", "Discovery", "PollingConfig", "PollingContext", "Pollster",
                       "PollsterSet", "Source", "Unreachable", "load_polling_config", "resource_key"],
    "zkpoll.plugin": ["CREDENTIAL_SCHEMES", "Discovery", "PollingContext", "Pollster",
                      "PollsterSet", "Unreachable", "resource_key"],
    "zkpoll.ownership": ["Contact", "MemberInfo", "OwnershipConfig", "OwnershipState",
                         "Partition", "Poll", "PollCallback", "PollKind", "Skip",
                         "claimed_cycle", "eligible_members", "member_info", "member_meters",
                         "ring_epoch"],
    "zkpoll.status": ["AlarmRow", "OwnerReport", "Problem", "PublisherFinding", "Report",
                      "Severity", "alarm_rows", "build_report", "find_owner", "member_state",
                      "publisher_findings", "source_intervals", "with_claims"],
    "zkpoll.testing": ["Certificates", "DEFAULT_CLASSPATH", "ManagedMemcached", "ManagedRedis",
                       "ManagedZooKeeper", "TCPProxy", "ZooKeeperEnsemble", "expire_session",
                       "find_installation", "four_letter_word", "free_port",
                       "make_certificates", "wait_for"],
    "zkpoll.testing.plugins": ["PollsterContract", "RefusedPort", "SilentServer", "discover",
                               "make_context", "make_test_plugins", "poll", "poll_cycle",
                               "poll_results",
                               "redis_server", "refused_port", "require_server",
                               "require_zookeeper", "silent_server", "zookeeper_server"],
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_names(module: str) -> None:
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(PUBLIC[module])
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name}"


def test_the_plugin_contract_is_the_polling_packages() -> None:
    import zkpoll.plugin
    import zkpoll.polling

    for name in zkpoll.plugin.__all__:
        assert getattr(zkpoll.polling, name) is getattr(zkpoll.plugin, name)


def test_one_exception_root() -> None:
    from zkpoll import exceptions

    for name in exceptions.__all__:
        assert issubclass(getattr(exceptions, name), exceptions.ZkpollError)


def test_top_level_names_are_the_library_api() -> None:
    import zkpoll
    import zkpoll.work

    assert zkpoll.WorkGroup is zkpoll.work.WorkGroup
    assert zkpoll.Cycle is zkpoll.work.Cycle
    assert issubclass(zkpoll.WorkGroupError, zkpoll.ZkpollError)
    with pytest.raises(AttributeError):
        zkpoll.NoSuchName  # noqa: B018
