"""Each fault knob of the simulator produces its fault on the wire, set at run time or from a scenario."""

from __future__ import annotations

import asyncio
import socket

import pytest
from pymodbus.client import AsyncModbusTcpClient

from gateway.profiles.loader import ProfileLibrary
from gateway.profiles.model import Table
from gateway.sim.faults import ExceptionCode, ExceptionRule, FaultError, Faults, faults_from_mapping
from gateway.sim.fleet import FleetThread
from gateway.sim.scenario import load_scenario
from tests.conftest import SCENARIOS, StartFleet
from tests.sim import wire as sim_wire

pytestmark = pytest.mark.wire  # real stacks, sockets on loopback or child processes

SOC = sim_wire.read_request(4, 0, 1)  # microstore: input register 0 is the SOC


def port_of(fleet: FleetThread, pack_id: str = "pack-01") -> int:
    return fleet.endpoint(pack_id).port


def test_delay_holds_the_response_back(sim_fleet: FleetThread) -> None:
    sim_fleet.set_faults("pack-01", delay_ms=300)
    with sim_wire.connect(port_of(sim_fleet)) as sock:
        sock.sendall(sim_wire.frame(1, 1, SOC))
        assert sim_wire.nothing_arrives(sock, 0.1)
        transaction, _, pdu = sim_wire.receive_frame(sock)
    assert (transaction, pdu[:2]) == (1, bytes([4, 2]))


def test_delayed_pipelined_responses_keep_their_order(sim_fleet: FleetThread) -> None:
    sim_fleet.set_faults("pack-01", delay_ms=50)
    with sim_wire.connect(port_of(sim_fleet)) as sock:
        sock.sendall(b"".join(sim_wire.frame(i, 1, SOC) for i in range(1, 6)))
        assert [sim_wire.receive_frame(sock)[0] for _ in range(5)] == [1, 2, 3, 4, 5]


def test_drop_after_requests_closes_the_connection(sim_fleet: FleetThread) -> None:
    sim_fleet.set_faults("pack-01", drop_after_requests=2)
    with sim_wire.connect(port_of(sim_fleet)) as sock:
        assert sim_wire.exchange(sock, SOC, transaction=1)[0] == 1
        assert sim_wire.exchange(sock, SOC, transaction=2)[0] == 2
        sock.sendall(sim_wire.frame(3, 1, SOC))
        assert sim_wire.closed_by_peer(sock)
    with sim_wire.connect(port_of(sim_fleet)) as sock:  # a new connection gets its own count
        assert sim_wire.exchange(sock, SOC)[2][:2] == bytes([4, 2])


def test_drop_probability_one_closes_on_every_request(sim_fleet: FleetThread) -> None:
    sim_fleet.set_faults("pack-01", drop_probability=1.0)
    with sim_wire.connect(port_of(sim_fleet)) as sock:
        sock.sendall(sim_wire.frame(1, 1, SOC))
        assert sim_wire.closed_by_peer(sock)


def test_wrong_unit_id_in_responses(sim_fleet: FleetThread) -> None:
    sim_fleet.set_faults("pack-01", wrong_unit_id=9)
    with sim_wire.connect(port_of(sim_fleet)) as sock:
        _, unit, pdu = sim_wire.exchange(sock, SOC, unit=1)
    assert unit == 9
    assert pdu[:2] == bytes([4, 2])  # otherwise a proper answer


def test_pymodbus_times_out_on_a_wrong_unit_id(sim_fleet: FleetThread) -> None:
    """What the gateway's client sees: no error response, a timeout (modbus.md)."""
    sim_fleet.set_faults("pack-01", wrong_unit_id=9)

    async def read() -> bool:
        client = AsyncModbusTcpClient("127.0.0.1", port=port_of(sim_fleet), timeout=0.3, retries=0)
        try:
            await client.connect()
            await client.read_input_registers(0, count=1, device_id=1)
        except Exception:
            return False
        finally:
            client.close()
        return True

    assert asyncio.run(read()) is False


@pytest.mark.parametrize("code", [0x01, 0x02, 0x04, 0x0A, 0x0B])
def test_injected_exception_on_chosen_registers(sim_fleet: FleetThread, code: int) -> None:
    rule = ExceptionRule(ExceptionCode(code), table=Table.INPUT, address=4, count=2)
    sim_fleet.set_faults("pack-01", exceptions=(rule,))
    with sim_wire.connect(port_of(sim_fleet)) as sock:
        untouched = sim_wire.exchange(sock, sim_wire.read_request(4, 0, 4))[2]
        assert untouched[:2] == bytes([4, 8])
        assert sim_wire.exchange(sock, sim_wire.read_request(4, 5, 1))[2] == bytes([0x84, code])
        overlapping = sim_wire.exchange(sock, sim_wire.read_request(4, 0, 24))[2]
        assert overlapping == bytes([0x84, code])
        other_table = sim_wire.exchange(sock, sim_wire.read_request(3, 4, 1))[2]
        assert other_table[:2] == bytes([3, 2])


def test_injected_exception_on_every_request(sim_fleet: FleetThread) -> None:
    sim_fleet.set_faults("pack-01", exceptions=(ExceptionRule(ExceptionCode.SERVER_DEVICE_FAILURE),))
    with sim_wire.connect(port_of(sim_fleet)) as sock:
        assert sim_wire.exchange(sock, SOC)[2] == bytes([0x84, 0x04])
        assert sim_wire.exchange(sock, bytes([6, 0, 3, 0, 1]))[2] == bytes([0x86, 0x04])
    assert sim_fleet.snapshot("pack-01").state.heartbeat == 0  # the failed write did nothing


def test_garbage_instead_of_a_response(sim_fleet: FleetThread) -> None:
    sim_fleet.set_faults("pack-01", garbage_probability=1.0)
    with sim_wire.connect(port_of(sim_fleet)) as sock:
        sock.sendall(sim_wire.frame(0x1234, 1, SOC))
        sock.settimeout(2.0)
        data = sock.recv(64)
    assert 3 <= len(data) <= 12
    proper_start = sim_wire.frame(0x1234, 1, bytes([4, 2, 0, 0]))[:9]  # MBAP, function 4, byte count 2
    assert not data.startswith(proper_start)


def test_silent_pack_reads_but_never_answers(sim_fleet: FleetThread) -> None:
    sim_fleet.set_faults("pack-01", silent=True)
    with sim_wire.connect(port_of(sim_fleet)) as sock:
        sock.sendall(sim_wire.frame(1, 1, SOC))
        assert sim_wire.nothing_arrives(sock, 0.3)
        sim_fleet.set_faults("pack-01", silent=False)
        assert sim_wire.exchange(sock, SOC, transaction=2)[0] == 2  # the connection stayed open
    assert sim_fleet.request_count("pack-01") == 2


def reset_on_connect(port: int) -> bool:
    """True if a new connection is reset (the RST may even beat connect() back to the caller)."""
    try:
        with sim_wire.connect(port) as sock:
            return sim_wire.closed_by_peer(sock)
    except ConnectionResetError:
        return True


def test_connection_limit_resets_further_connections(sim_fleet: FleetThread) -> None:
    sim_fleet.set_faults("pack-01", max_connections=1)
    with sim_wire.connect(port_of(sim_fleet)) as first:
        assert sim_wire.exchange(first, SOC)[2][:2] == bytes([4, 2])
        assert reset_on_connect(port_of(sim_fleet))
        assert sim_wire.exchange(first, SOC)[2][:2] == bytes([4, 2])


def test_refused_connections_and_recovery(sim_fleet: FleetThread) -> None:
    port = port_of(sim_fleet)
    sim_fleet.set_faults("pack-01", refuse_connections=True)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2.0).close()
    sim_fleet.clear_faults("pack-01")
    with sim_wire.connect(port) as sock:
        assert sim_wire.exchange(sock, SOC)[2][:2] == bytes([4, 2])


def test_faults_are_per_pack(sim_fleet: FleetThread) -> None:
    sim_fleet.set_faults("pack-01", silent=True)
    with sim_wire.connect(port_of(sim_fleet, "pack-02")) as sock:
        assert sim_wire.exchange(sock, SOC)[2][:2] == bytes([4, 2])


def test_unknown_knobs_and_bad_values_are_named(sim_fleet: FleetThread) -> None:
    with pytest.raises(FaultError, match=r"unknown fault knob.*delay_sec"):
        sim_fleet.set_faults("pack-01", delay_sec=3)
    with pytest.raises(FaultError, match="drop_probability"):
        Faults(drop_probability=2.0)
    with pytest.raises(FaultError, match="0x03 cannot be injected"):
        ExceptionRule(ExceptionCode.ILLEGAL_DATA_VALUE)


def test_faults_from_a_scenario_mapping() -> None:
    faults = faults_from_mapping(
        {
            "delay_ms": 30,
            "exceptions": [{"code": 11, "table": "holding", "address": 300, "count": 2}],
            "silent": False,
        }
    )
    assert faults.delay_ms == 30.0
    assert faults.exceptions == (
        ExceptionRule(ExceptionCode.GATEWAY_TARGET_NO_RESPONSE, Table.HOLDING, 300, 2),
    )
    with pytest.raises(FaultError, match="table 'holdings'"):
        faults_from_mapping({"exceptions": [{"code": 2, "table": "holdings"}]})
    with pytest.raises(FaultError, match="silent must be true or false"):
        faults_from_mapping({"silent": "yes"})


def test_troubled_scenario_faults_reach_the_wire(
    start_sim_fleet: StartFleet, profile_library: ProfileLibrary
) -> None:
    fleet = start_sim_fleet(load_scenario(SCENARIOS / "troubled.yaml", profile_library.get))
    with sim_wire.connect(port_of(fleet, "wrongunit-04")) as sock:
        assert sim_wire.exchange(sock, SOC)[1] == 7
    with sim_wire.connect(port_of(fleet, "busy-05")) as sock:
        assert sim_wire.exchange(sock, bytes([6, 1, 44, 0, 1]))[2] == bytes([0x86, 0x0B])  # holding 300
    with sim_wire.connect(port_of(fleet, "dead-08")) as sock:
        sock.sendall(sim_wire.frame(1, 1, sim_wire.read_request(3, 40000, 2)))
        assert sim_wire.nothing_arrives(sock, 0.2)
    assert (
        fleet.snapshot("hot-06").operating.limits.discharge_w
        < fleet.snapshot("busy-05").params.max_discharge_w
    )
    assert "over_temperature" in fleet.snapshot("hot-06").operating.alarms
    assert fleet.snapshot("faulted-07").operating.state == "fault"
