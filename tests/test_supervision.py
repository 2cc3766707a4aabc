"""What the supervisors of child processes share: the JSON messages, the restart backoff, the environment."""

from __future__ import annotations

import pytest

from gateway.supervision import (
    BACKOFF_CAP_S,
    MessageError,
    child_environment,
    decode_message,
    encode_message,
    restart_delay_s,
)


def test_a_message_must_be_a_json_object_with_a_kind() -> None:
    assert decode_message(b'{"kind":"ready"}') == {"kind": "ready"}
    assert decode_message(encode_message({"kind": "log", "level": 20})) == {"kind": "log", "level": 20}
    for packet in (b"\x80\x04", b"[1]", b'{"id": 1}', b"not json", b'{"kind": 3}'):
        with pytest.raises(MessageError):
            decode_message(packet)


def test_the_restart_delay_doubles_from_a_tenth_of_a_second_up_to_its_cap() -> None:
    assert [restart_delay_s(n) for n in range(1, 6)] == [0.1, 0.2, 0.4, 0.8, 1.6]
    assert restart_delay_s(60) == BACKOFF_CAP_S


def test_a_child_never_inherits_what_only_the_core_may_tell_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.setenv("WATCHDOG_USEC", "10000000")
    monkeypatch.setenv("WATCHDOG_PID", "1")
    monkeypatch.setenv("SOCGW_KEPT", "yes")
    environment = child_environment()
    assert not {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} & set(environment)
    assert environment["SOCGW_KEPT"] == "yes"
