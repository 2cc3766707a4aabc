"""The first frames the front door lets through: a DNP3 link header with its CRC, an MMS connection
request (TPKT + COTP CR); anything else, or a header cut short, is told apart."""

from __future__ import annotations

from dnp3.core.crc import append_crc

from gateway.northbound.frontdoor.sniff import Verdict, dnp3_crc, dnp3_link_header, mms_connection_request

# A DNP3 REQUEST_LINK_STATUS from master 1 to outstation 10, its CRC from dnp3py (an independent master).
LINK_STATUS = append_crc(bytes.fromhex("056405c90a000100"))
# A COTP connection request as ISO 8073 lays it out: TPKT length 22, LI 17, CR, TPDU size and TSAPs.
COTP_CR = bytes.fromhex("0300001611e00000000100c0010dc2020001c1020001")


def test_a_dnp3_link_header_with_its_crc_is_valid_and_every_prefix_asks_for_more() -> None:
    assert dnp3_crc(LINK_STATUS[:8]) == int.from_bytes(LINK_STATUS[8:10], "little")
    assert dnp3_link_header(LINK_STATUS) is Verdict.VALID
    assert dnp3_link_header(LINK_STATUS + b"\x00" * 20) is Verdict.VALID
    for cut in range(1, len(LINK_STATUS)):
        assert dnp3_link_header(LINK_STATUS[:cut]) is Verdict.MORE


def test_a_wrong_dnp3_crc_start_or_length_is_invalid() -> None:
    assert dnp3_link_header(LINK_STATUS[:9] + bytes([LINK_STATUS[9] ^ 1])) is Verdict.INVALID
    assert dnp3_link_header(b"\x05\x65") is Verdict.INVALID
    assert dnp3_link_header(b"GET / HTTP/1.1\r\n") is Verdict.INVALID
    assert dnp3_link_header(append_crc(bytes.fromhex("05640449") + LINK_STATUS[4:8])) is Verdict.INVALID


def test_an_mms_connection_request_is_valid_and_other_tpkt_is_not() -> None:
    assert mms_connection_request(COTP_CR) is Verdict.VALID
    for cut in range(1, 6):
        assert mms_connection_request(COTP_CR[:cut]) is Verdict.MORE
    data_tpdu = bytes.fromhex("0300000702f080")  # COTP DT: an association must start with CR
    assert mms_connection_request(data_tpdu) is Verdict.INVALID
    assert mms_connection_request(b"\x16\x03\x01\x02\x00\x01") is Verdict.INVALID  # a TLS ClientHello
    wrong_length = COTP_CR[:3] + bytes([COTP_CR[3] + 1]) + COTP_CR[4:]
    assert mms_connection_request(wrong_length) is Verdict.INVALID
