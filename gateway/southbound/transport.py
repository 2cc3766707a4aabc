"""How a unit is reached: Modbus TCP, Modbus RTU tunnelled over TCP by a converter, or RTU on a serial port.

RTU frames carry no MBAP header and no transaction id: one request at a time on the line, each answer
told apart only by its unit id and its CRC. The serial settings also matter behind a converter: they set
how long a frame takes on the RS-485 wire it feeds (`char_s`, `silence_s`), which is what the line
planner (`line.py`) budgets.

Pure: no I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

PARITIES = ("N", "E", "O")
# Modbus over serial line V1.02, 2.5.1.1: above 19200 baud the inter-frame silence is fixed at 1.75 ms.
_FIXED_SILENCE_ABOVE_BAUD = 19200
_FIXED_SILENCE_S = 0.00175


class TransportKind(enum.StrEnum):
    TCP = "tcp"
    RTU_OVER_TCP = "rtu-over-tcp"
    SERIAL = "serial"


@dataclass(frozen=True)
class SerialSettings:
    """One RS-485 line's character format (8 data bits, as Modbus RTU requires)."""

    baud: int = 9600
    parity: str = "N"  # N, E or O
    stop_bits: int = 1  # 1 or 2

    @property
    def bits_per_char(self) -> int:
        """Start bit, 8 data bits, the parity bit if any, the stop bits."""
        return 1 + 8 + (self.parity != "N") + self.stop_bits

    @property
    def char_s(self) -> float:
        return self.bits_per_char / self.baud

    @property
    def silence_s(self) -> float:
        """The 3.5 character times of silence that end a frame (fixed 1.75 ms above 19200 baud)."""
        if self.baud > _FIXED_SILENCE_ABOVE_BAUD:
            return _FIXED_SILENCE_S
        return 3.5 * self.char_s

    def __str__(self) -> str:
        return f"{self.baud} baud 8{self.parity}{self.stop_bits}"


@dataclass(frozen=True)
class Transport:
    kind: TransportKind = TransportKind.TCP
    serial: SerialSettings = SerialSettings()  # the RS-485 side (rtu-over-tcp, serial)

    @classmethod
    def named(cls, kind: str, baud: int = 9600, parity: str = "N", stop_bits: int = 1) -> Transport:
        """From the site config's words (`transport: serial`, `baud: 19200`, ...)."""
        return cls(TransportKind(kind), SerialSettings(baud, parity, stop_bits))

    @property
    def is_rtu(self) -> bool:
        return self.kind is not TransportKind.TCP


TCP = Transport()
