"""The lean Modbus TCP client: its frames are pymodbus's, its answers the simulator's words.

The faults (wrong unit id, wrong transaction id, malformed frames, exceptions, slow and silent devices)
run through it in test_faults.py, test_hostile.py and test_session.py, as they run for every link.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.framer import FramerSocket
from pymodbus.pdu import DecodePDU, ModbusPDU
from pymodbus.pdu import bit_message as bits
from pymodbus.pdu import register_message as registers

from gateway.profiles.model import Table
from gateway.southbound.errors import Target
from gateway.southbound.link import ModbusLink
from gateway.southbound.tcp_client import LeanTcpClient, frame

pytestmark = pytest.mark.wire  # the simulator on loopback


@pytest.mark.parametrize(
    ("function_code", "address", "count", "words", "pdu"),
    [
        (0x01, 3, 9, (), bits.ReadCoilsRequest(address=3, count=9)),
        (0x02, 0, 1, (), bits.ReadDiscreteInputsRequest(address=0, count=1)),
        (0x03, 40, 20, (), registers.ReadHoldingRegistersRequest(address=40, count=20)),
        (0x04, 0, 125, (), registers.ReadInputRegistersRequest(address=0, count=125)),
        (0x05, 7, 1, (1,), bits.WriteSingleCoilRequest(address=7, bits=[True])),
        (0x05, 7, 1, (0,), bits.WriteSingleCoilRequest(address=7, bits=[False])),
        (0x06, 9, 1, (0xFFFE,), registers.WriteSingleRegisterRequest(address=9, registers=[0xFFFE])),
        (0x0F, 1, 3, (1, 0, 1), bits.WriteMultipleCoilsRequest(address=1, bits=[True, False, True])),
        (
            0x0F,
            0,
            9,
            (1, 1, 0, 0, 0, 0, 0, 0, 1),
            bits.WriteMultipleCoilsRequest(address=0, bits=[True, True] + [False] * 6 + [True]),
        ),
        (0x10, 2, 2, (1, 0x8000), registers.WriteMultipleRegistersRequest(address=2, registers=[1, 0x8000])),
    ],
)
def test_each_request_frame_is_the_one_pymodbus_builds(
    function_code: int, address: int, count: int, words: tuple[int, ...], pdu: ModbusPDU
) -> None:
    pdu.transaction_id, pdu.dev_id = 513, 7
    expected = FramerSocket(DecodePDU(False)).buildFrame(pdu)
    assert frame((513, 7, function_code), address, count, words) == expected


def test_reads_and_writes_through_a_link_agree_with_pymodbus(sim_fleet: Any) -> None:
    endpoint = sim_fleet.endpoint("pack-03")
    # mp2000: input registers 0..23, holding 0..1 (setpoint), coil 0 (enable), discrete 0 (grid present)
    blocks = [(Table.INPUT, 0, 24), (Table.HOLDING, 0, 2), (Table.COIL, 0, 1), (Table.DISCRETE, 0, 1)]

    async def scenario() -> tuple[list[list[int]], list[list[int]], list[int], list[int]]:
        link = ModbusLink(Target(endpoint.host, endpoint.port, 1), timeout_s=1.0, connect_timeout_s=1.0)
        await link.open()
        assert isinstance(link._client, LeanTcpClient)
        client = AsyncModbusTcpClient(endpoint.host, port=endpoint.port, timeout=1, retries=0)
        assert await client.connect()
        try:
            ours = [await link.read(table, start, count, 1) for table, start, count in blocks[2:]]
            theirs = [
                [int(b) for b in (await client.read_coils(0, count=1, device_id=1)).bits[:1]],
                [int(b) for b in (await client.read_discrete_inputs(0, count=1, device_id=1)).bits[:1]],
            ]
            await link.write(Table.COIL, 0, [0], 1)  # standby
            off = await link.read(Table.COIL, 0, 1, 1)
            await link.write(Table.COIL, 0, [1], 1)
            await link.write(Table.HOLDING, 0, [0, 250], 1)  # 250 W, int32 in two words
            setpoint = await link.read(Table.HOLDING, 0, 2, 1)
            started = time.monotonic()
            while time.monotonic() - started < 1.0:  # the registers of a pack move: read until a pair agrees
                mine = await link.read(Table.INPUT, 0, 24, 1)
                other = list((await client.read_input_registers(0, count=24, device_id=1)).registers)
                if mine == other:
                    break
                await asyncio.sleep(0.01)
            ours.append(mine)
            theirs.append(other)
        finally:
            client.close()
            link.close()
        return ours, theirs, off, setpoint

    ours, theirs, off, setpoint = asyncio.run(scenario())
    assert ours[:2] == theirs[:2] == [[1], [1]]  # enabled, grid present
    assert ours[2] == theirs[2] and len(ours[2]) == 24
    assert off == [0]
    assert setpoint == [0, 250]
