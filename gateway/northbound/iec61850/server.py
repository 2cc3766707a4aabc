"""One running libiec61850 MMS server: model, TLS, control handlers, updater; torn down in order.

Kept apart from `iec61850.py` so that loading the C library waits until a server really starts
(`socgw validate` and the other commands never load it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pyiec61850.pyiec61850 as iec

from gateway.northbound.adapter import ClientBehind, NorthboundError, Submit, as_seen
from gateway.northbound.iec61850.controls import ControlHandlers
from gateway.northbound.iec61850.model import BuiltModel
from gateway.northbound.iec61850.native import ModelWriter, address_of
from gateway.northbound.iec61850.plan import ModelPlan
from gateway.northbound.iec61850.settings import Settings, TlsFiles
from gateway.northbound.iec61850.stderr import NativeStderr
from gateway.northbound.iec61850.updater import Updater

log = logging.getLogger(__name__)

# Clients change nothing by writing: setpoints arrive as controls, checked before they are accepted.
READ_ONLY_FCS = (
    iec.IEC61850_FC_DC,
    iec.IEC61850_FC_CF,
    iec.IEC61850_FC_SP,
    iec.IEC61850_FC_SV,
    iec.IEC61850_FC_SE,
    iec.IEC61850_FC_SG,
)


def tls_configuration(files: TlsFiles) -> Any:
    """libiec61850's TLS settings for mutual TLS; NorthboundError names a file it cannot load."""
    tls = iec.TLSConfiguration_create()
    loaders: tuple[tuple[str, Callable[[], bool], str], ...] = (
        ("cert", lambda: iec.TLSConfiguration_setOwnCertificateFromFile(tls, str(files.cert)), "certificate"),
        ("key", lambda: iec.TLSConfiguration_setOwnKeyFromFile(tls, str(files.key), None), "private key"),
        ("ca", lambda: iec.TLSConfiguration_addCACertificateFromFile(tls, str(files.ca)), "CA certificate"),
    )
    for key, load, what in loaders:
        path = getattr(files, key)
        if not load():
            iec.TLSConfiguration_destroy(tls)
            raise NorthboundError(
                f"IEC 61850 TLS: cannot load {path} as a PEM {what} (`northbound.iec61850.tls.{key}`): "
                "check the file's format and permissions"
            )
    iec.TLSConfiguration_setChainValidation(tls, True)
    iec.TLSConfiguration_setAllowOnlyKnownCertificates(tls, False)
    return tls


class RunningServer:
    """Started on construction; `close` releases every thread, socket, handler and C object."""

    def __init__(
        self,
        settings: Settings,
        plan: ModelPlan,
        submit: Submit,
        now: datetime,
        client_behind: ClientBehind = as_seen,
    ) -> None:
        self._server: Any = None
        self._tls: Any = None
        self._controls: ControlHandlers | None = None
        self._model = BuiltModel(plan)
        NativeStderr.acquire()
        try:
            if settings.tls is not None:
                self._tls = tls_configuration(settings.tls)
                self._server = iec.IedServer_createWithTlsSupport(self._model.model, self._tls)
            else:
                self._server = iec.IedServer_create(self._model.model)
            for fc in READ_ONLY_FCS:
                iec.IedServer_setWriteAccessPolicy(self._server, fc, iec.ACCESS_POLICY_DENY)
            self.updater = Updater(ModelWriter(address_of(self._server)), self._model.publications)
            self.updater.write_fixed(self._model.fixed, now)
            self._controls = ControlHandlers(
                self._server, self._model.controls, submit, self.updater.rated_power_w, client_behind
            )
            iec.IedServer_setLocalIpAddress(self._server, settings.host)
            iec.IedServer_start(self._server, settings.port)
            if not iec.IedServer_isRunning(self._server):
                raise NorthboundError(
                    f"cannot serve IEC 61850 MMS on {settings.host}:{settings.port}: the port is in use, or "
                    "below 1024 without root or CAP_NET_BIND_SERVICE (`northbound.iec61850.port`)"
                )
            self.updater.start()
        except BaseException:
            self._teardown()
            raise

    def close(self) -> None:
        if self.updater.stop():
            self._teardown()
        else:
            self._abandon()

    def _teardown(self) -> None:
        # Order matters: no handler may run once the subscribers are gone, and the model outlives the
        # server that serves it.
        if self._server is not None and iec.IedServer_isRunning(self._server):
            iec.IedServer_stop(self._server)
        if self._controls is not None:
            self._controls.release()
            self._controls = None
        if self._server is not None:
            iec.IedServer_destroy(self._server)
            self._server = None
        self._model.destroy()
        if self._tls is not None:
            iec.TLSConfiguration_destroy(self._tls)
            self._tls = None
        NativeStderr.release()

    def _abandon(self) -> None:
        """Shut the service down around an updater thread that still writes into the model: freeing
        the server or the model under it would crash the process (SIGSEGV), so they stay allocated."""
        if iec.IedServer_isRunning(self._server):
            iec.IedServer_stop(self._server)  # frees nothing: clients and control handlers end
        if self._controls is not None:
            self._controls.release()
            self._controls = None
        log.error(
            "IEC 61850: the updater thread is still writing into the model, so the server, its model, "
            "TLS settings and C stderr capture are left allocated (leaked) instead of freed under it"
        )
