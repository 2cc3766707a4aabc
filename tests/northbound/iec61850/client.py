"""A libiec61850 MMS client (pyiec61850-ng), run by the IEC 61850 tests in its own process.

Never run an IedConnection inside the gateway's process (notes/iec61850.md): the tests start this script
with `sys.executable` and read one JSON document per line from its stdout.

    python tests/northbound/iec61850/client.py --port 10102 read 'SOCGWFLEET/ZBAT1.Soc.mag.f' MX ...
    python tests/northbound/iec61850/client.py --port 10102 operate SOCGWFLEET/DRCC1.OutWSet 900
    python tests/northbound/iec61850/client.py --port 10102 operate SOCGWFLEET/DRCC1.DERStr false
    python tests/northbound/iec61850/client.py --port 10102 report SOCGWPACK_01/LLN0.BR.brcbMeas --seconds 20
    python tests/northbound/iec61850/client.py --port 10102 browse
    python tests/northbound/iec61850/client.py --port 10102 hammer --seconds 10   (bench)
    (--ca/--cert/--key for mutual TLS)

About 5-10 % of fresh libiec61850 client connections are lost before their first answer, so every
command starts with a directory request, on a new connection each time it fails (bounded); the commands
themselves are not retried.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import pyiec61850.pyiec61850 as iec

CONNECT_ATTEMPTS = 5
TIMEOUT_MS = 5000
QUALITY_BITS = 13
FCS = {name: getattr(iec, f"IEC61850_FC_{name}") for name in ("ST", "MX", "CF", "DC", "CO", "SP", "BR", "RP")}


class ClientError(Exception):
    pass


_OUTPUT = threading.Lock()  # the report handler prints on libiec61850's thread


def emit(document: Any) -> None:
    with _OUTPUT:
        sys.stdout.write(json.dumps(document) + "\n")
        sys.stdout.flush()


def python_value(value: Any) -> Any:
    """An MmsValue as JSON-able Python (None for members a report leaves out)."""
    if value is None:
        return None
    kind = iec.MmsValue_getType(value)
    if kind == iec.MMS_FLOAT:
        return iec.MmsValue_toFloat(value)
    if kind == iec.MMS_BOOLEAN:
        return bool(iec.MmsValue_getBoolean(value))
    if kind == iec.MMS_INTEGER:
        return int(iec.MmsValue_toInt64(value))
    if kind == iec.MMS_UNSIGNED:
        return int(iec.MmsValue_toUint32(value))
    if kind == iec.MMS_BIT_STRING:
        if iec.MmsValue_getBitStringSize(value) == QUALITY_BITS:
            return int(iec.Quality_fromMmsValue(value))
        return int(iec.MmsValue_getBitStringAsInteger(value))
    if kind in (iec.MMS_VISIBLE_STRING, iec.MMS_STRING):
        return str(iec.MmsValue_toString(value))
    if kind == iec.MMS_UTC_TIME:
        return int(iec.MmsValue_getUtcTimeInMs(value))
    if kind in (iec.MMS_STRUCTURE, iec.MMS_ARRAY):
        return [
            python_value(iec.MmsValue_getElement(value, i)) for i in range(iec.MmsValue_getArraySize(value))
        ]
    if kind == iec.MMS_DATA_ACCESS_ERROR:
        return {"access_error": int(iec.MmsValue_getDataAccessError(value))}
    return None


def strings(linked_list: Any) -> list[str]:
    found = []
    element = iec.LinkedList_getNext(linked_list)
    while element is not None:
        found.append(iec.toCharP(element.data))
        element = iec.LinkedList_getNext(element)
    iec.LinkedList_destroy(linked_list)
    return found


class Client:
    def __init__(self, args: argparse.Namespace) -> None:
        self._tls: Any = None
        if args.ca is not None:
            self._tls = iec.TLSConfiguration_create()
            iec.TLSConfiguration_setClientMode(self._tls)
            iec.TLSConfiguration_addCACertificateFromFile(self._tls, args.ca)
            if args.cert is not None:
                iec.TLSConfiguration_setOwnCertificateFromFile(self._tls, args.cert)
                iec.TLSConfiguration_setOwnKeyFromFile(self._tls, args.key, None)
        problem = ""
        for _ in range(CONNECT_ATTEMPTS):
            self.connection = (
                iec.IedConnection_createWithTlsSupport(self._tls)
                if self._tls is not None
                else iec.IedConnection_create()
            )
            iec.IedConnection_setConnectTimeout(self.connection, TIMEOUT_MS)
            iec.IedConnection_setRequestTimeout(self.connection, TIMEOUT_MS)
            _, error = iec.IedConnection_connect(self.connection, args.host, args.port)
            if error != iec.IED_ERROR_OK:
                problem = f"connect to {args.host}:{args.port} failed: IedClientError {error}"
                iec.IedConnection_destroy(self.connection)
                break  # refused (no server, TLS handshake): trying again changes nothing
            devices, error = iec.IedConnection_getLogicalDeviceList(self.connection)
            if error == iec.IED_ERROR_OK:
                self.devices = strings(devices)
                return
            # The libiec61850 client drops ~5 % of fresh connections before their first answer
            # (the Rust client never does against the same server): connect again.
            problem = f"the first request failed: IedClientError {error}"
            iec.IedConnection_close(self.connection)
            iec.IedConnection_destroy(self.connection)
        if self._tls is not None:
            iec.TLSConfiguration_destroy(self._tls)
        raise ClientError(problem)

    def close(self) -> None:
        iec.IedConnection_close(self.connection)
        iec.IedConnection_destroy(self.connection)
        if self._tls is not None:
            iec.TLSConfiguration_destroy(self._tls)

    def read(self, reference: str, fc: str) -> Any:
        value, error = iec.IedConnection_readObject(self.connection, reference, FCS[fc])
        if error != iec.IED_ERROR_OK:
            return {"error": int(error)}
        result = python_value(value)
        iec.MmsValue_delete(value)
        return result


def command_read(client: Client, targets: Sequence[str]) -> None:
    pairs = list(zip(targets[::2], targets[1::2], strict=True))
    emit({"values": [client.read(reference, fc) for reference, fc in pairs]})


def command_operate(client: Client, reference: str, text: str) -> None:
    control = iec.ControlObjectClient_create(reference, client.connection)
    if control is None:
        raise ClientError(f"no control object {reference}")
    if text in ("true", "false"):
        value = iec.MmsValue_newBoolean(text == "true")
    else:
        value = iec.MmsValue_newFloat(float(text))
    iec.ControlObjectClient_setOrigin(control, "socgw-test", iec.CONTROL_ORCAT_REMOTE_CONTROL)
    ok = bool(iec.ControlObjectClient_operate(control, value, 0))
    last = iec.ControlObjectClient_getLastApplError(control)
    emit(
        {
            "ok": ok,
            "error": int(iec.ControlObjectClient_getLastError(control)),
            "add_cause": int(last.addCause),
            "time_ms": int(time.time() * 1000),
        }
    )
    iec.MmsValue_delete(value)
    iec.ControlObjectClient_destroy(control)


class _ReportPrinter(iec.RCBHandler):  # type: ignore[misc]  # SWIG classes are untyped
    def trigger(self) -> None:
        # An exception escaping into the SWIG director aborts the process: report it instead.
        try:
            report = self._client_report
            values = iec.ClientReport_getDataSetValues(report)
            emit(
                {
                    "rpt_id": iec.ClientReport_getRptId(report),
                    "values": python_value(values) if values is not None else None,
                }
            )
        except Exception as error:
            with contextlib.suppress(Exception):  # stdout may be closed already
                emit({"report_error": repr(error)})


def command_report(client: Client, rcb_reference: str, seconds: float) -> None:
    block = iec.ClientReportControlBlock_create(rcb_reference)
    rcb, error = iec.IedConnection_getRCBValues(client.connection, rcb_reference, block)
    if error != iec.IED_ERROR_OK:
        raise ClientError(f"cannot read {rcb_reference}: IedClientError {error}")
    subscriber = iec.RCBSubscriber()
    subscriber.setIedConnection(client.connection)
    subscriber.setRcbReference(rcb_reference)
    subscriber.setRcbRptId(iec.ClientReportControlBlock_getRptId(rcb))
    subscriber.setEventHandler(_ReportPrinter().__disown__())  # the subscriber deletes it
    if not subscriber.subscribe():
        raise ClientError(f"cannot install a report handler for {rcb_reference}")
    iec.ClientReportControlBlock_setRptEna(rcb, True)
    _, error = iec.IedConnection_setRCBValues(client.connection, rcb, iec.RCB_ELEMENT_RPT_ENA, True)
    if error != iec.IED_ERROR_OK:
        raise ClientError(f"cannot enable {rcb_reference}: IedClientError {error}")
    emit({"ready": rcb_reference, "dataset": iec.ClientReportControlBlock_getDataSetReference(rcb)})
    time.sleep(seconds)
    iec.ClientReportControlBlock_setRptEna(rcb, False)
    iec.IedConnection_setRCBValues(client.connection, rcb, iec.RCB_ELEMENT_RPT_ENA, True)
    iec.ClientReportControlBlock_destroy(rcb)


def command_hammer(client: Client, seconds: float) -> None:
    """Read every logical device's ZBAT1 measurements (one MMS read each) as fast as possible."""
    references = [f"{device}/ZBAT1" for device in client.devices]
    reads = errors = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for reference in references:
            value, error = iec.IedConnection_readObject(client.connection, reference, FCS["MX"])
            if error == iec.IED_ERROR_OK:
                iec.MmsValue_delete(value)
                reads += 1
            else:
                errors += 1
    emit({"reads": reads, "errors": errors, "seconds": seconds})


def command_browse(client: Client) -> None:
    variables: dict[str, list[str]] = {}
    datasets: dict[str, list[str]] = {}
    for device in client.devices:
        names, error = iec.IedConnection_getLogicalDeviceVariables(client.connection, device)
        if error != iec.IED_ERROR_OK:
            raise ClientError(f"cannot list the variables of {device}: IedClientError {error}")
        variables[device] = strings(names)
        sets, error = iec.IedConnection_getLogicalNodeDirectory(
            client.connection, f"{device}/LLN0", iec.ACSI_CLASS_DATA_SET
        )
        if error != iec.IED_ERROR_OK:
            raise ClientError(f"cannot list the datasets of {device}: IedClientError {error}")
        for name in strings(sets):
            reference = f"{device}/LLN0.{name}"
            members, error = iec.IedConnection_getDataSetDirectory(client.connection, reference, None)
            if error != iec.IED_ERROR_OK:
                raise ClientError(f"cannot read dataset {reference}: IedClientError {error}")
            datasets[reference] = strings(members)
    emit({"variables": variables, "datasets": datasets})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ca")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    commands = parser.add_subparsers(dest="command", required=True)
    read = commands.add_parser("read")
    read.add_argument("targets", nargs="+", help="REFERENCE FC pairs")
    operate = commands.add_parser("operate")
    operate.add_argument("reference")
    operate.add_argument("value")
    report = commands.add_parser("report")
    report.add_argument("rcb")
    report.add_argument("--seconds", type=float, default=20.0)
    commands.add_parser("browse")
    hammer = commands.add_parser("hammer")
    hammer.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    try:
        client = Client(args)
    except ClientError as error:
        emit({"connect_error": str(error)})
        return 1
    try:
        if args.command == "read":
            command_read(client, args.targets)
        elif args.command == "operate":
            command_operate(client, args.reference, args.value)
        elif args.command == "report":
            command_report(client, args.rcb, args.seconds)
        elif args.command == "hammer":
            command_hammer(client, args.seconds)
        else:
            command_browse(client)
    except ClientError as error:
        emit({"error": str(error)})
        return 1
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
