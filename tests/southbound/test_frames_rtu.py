"""The RTU frame inspector: the outstanding answer told apart from noise, framing errors and late answers."""

from __future__ import annotations

from gateway.southbound.frames import Anomaly, RtuInspector, crc16, with_crc


def _asked(unit: int, count: int = 2) -> RtuInspector:
    inspector = RtuInspector()
    inspector.begin()
    inspector(True, with_crc(bytes([unit, 0x03, 0x00, 0x00, 0x00, count])))
    return inspector


def _answer(unit: int, words: int = 2) -> bytes:
    return with_crc(bytes([unit, 0x03, 2 * words]) + bytes(2 * words))


def test_the_crc_is_the_modbus_one() -> None:
    # Read one holding register at 0 of unit 1: the frame every Modbus RTU tutorial shows.
    assert with_crc(bytes.fromhex("010300000001")).hex() == "010300000001840a"
    assert crc16(b"") == 0xFFFF


def test_a_good_answer_passes_whole_and_a_partial_one_waits() -> None:
    inspector = _asked(3)
    answer = _answer(3)
    assert inspector(False, answer[:5]) == answer[:5]
    assert inspector.pending_bytes == 5 and inspector.observation is None
    assert inspector(False, answer) == answer
    assert inspector.observation is None and inspector.pending_bytes == 0


def test_a_wrong_crc_is_noise_not_a_timeout() -> None:
    inspector = _asked(3)
    bad = bytearray(_answer(3))
    bad[4] ^= 0x40
    assert inspector(False, bytes(bad)) == b""
    assert inspector.observation is not None and inspector.observation.anomaly is Anomaly.CRC


def test_a_short_answer_or_a_foreign_function_is_a_framing_error() -> None:
    inspector = _asked(3, count=2)
    assert inspector(False, _answer(3, words=1)) == b""
    assert inspector.observation is not None and inspector.observation.anomaly is Anomaly.FRAMING
    assert (
        "5-byte answer" not in inspector.observation.detail
        and "where 9 bytes" in inspector.observation.detail
    )

    inspector = _asked(3)
    assert inspector(False, with_crc(bytes([3, 0x2B, 0, 0]))) == b""
    assert inspector.observation is not None and inspector.observation.anomaly is Anomaly.FRAMING


def test_a_late_answer_of_an_earlier_unit_is_skipped_and_a_stranger_is_named() -> None:
    inspector = _asked(1)
    inspector.end()
    inspector.begin()
    inspector(True, with_crc(bytes([2, 0x03, 0, 0, 0, 2])))
    late, answer = _answer(1), _answer(2)
    assert inspector(False, late + answer) == answer
    assert inspector.late_answers == 1 and inspector.observation is None

    inspector = _asked(2)
    assert inspector(False, _answer(9)) == b""
    assert inspector.observation is not None and inspector.observation.anomaly is Anomaly.UNIT_MISMATCH
    assert inspector.observation.unit == 9


def test_an_exception_answer_passes() -> None:
    inspector = _asked(4)
    exception = with_crc(bytes([4, 0x83, 0x02]))
    assert inspector(False, exception) == exception and inspector.observation is None
