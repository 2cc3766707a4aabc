"""libiec61850's data-model lock and value updates, called through ctypes.

The SWIG binding holds the GIL while `IedServer_lockDataModel` waits for the lock, and libiec61850's
own thread may be waiting for the GIL (to run a Python control handler) while it holds that lock: the
process deadlocks (measured: hangs every time in a tight loop; see notes/iec61850.md). ctypes releases
the GIL around every foreign call, so the lock, the updates and the unlock go through ctypes, on the very
library the binding loaded (same globals, same server object).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyiec61850
import pyiec61850.pyiec61850  # loads libiec61850 into the process

_VOID_P = ctypes.c_void_p


def address_of(swig_object: Any) -> int:
    """The C address behind a SWIG proxy (or a bare SWIG pointer object)."""
    inner = getattr(swig_object, "this", swig_object)
    return int(inner)


def library_path() -> str:
    """The libiec61850 shared library the binding loaded (read from the process's memory map)."""
    with Path("/proc/self/maps").open(encoding="utf-8") as maps:
        for line in maps:
            path = line.rsplit(maxsplit=1)[-1]
            if "/libiec61850" in path and ".so" in path:
                return path
    package_dir = Path(pyiec61850.__file__).resolve().parent
    for directory in (package_dir, package_dir.parent / "pyiec61850_ng.libs"):
        for candidate in sorted(directory.glob("libiec61850*.so*")):
            return str(candidate)
    raise OSError("libiec61850 is not loaded and not found next to pyiec61850: reinstall pyiec61850-ng")


@functools.cache
def native() -> ctypes.CDLL:
    """The library with the signatures of the functions socgw calls through ctypes."""
    lib = ctypes.CDLL(library_path())
    signatures: dict[str, list[Any]] = {
        "IedServer_lockDataModel": [_VOID_P],
        "IedServer_unlockDataModel": [_VOID_P],
        "IedServer_updateFloatAttributeValue": [_VOID_P, _VOID_P, ctypes.c_float],
        "IedServer_updateBooleanAttributeValue": [_VOID_P, _VOID_P, ctypes.c_bool],
        "IedServer_updateInt32AttributeValue": [_VOID_P, _VOID_P, ctypes.c_int32],
        "IedServer_updateQuality": [_VOID_P, _VOID_P, ctypes.c_uint16],
        "IedServer_updateUTCTimeAttributeValue": [_VOID_P, _VOID_P, ctypes.c_uint64],
        "IedServer_updateVisibleStringAttributeValue": [_VOID_P, _VOID_P, ctypes.c_char_p],
    }
    for name, argtypes in signatures.items():
        function = getattr(lib, name)
        function.argtypes = argtypes
        function.restype = None
    return lib


class ModelWriter:
    """Writes attribute values of one running `IedServer`; every write must happen inside `locked()`."""

    def __init__(self, server_address: int) -> None:
        lib = native()
        self._server = server_address
        self._lock = lib.IedServer_lockDataModel
        self._unlock = lib.IedServer_unlockDataModel
        self._float = lib.IedServer_updateFloatAttributeValue
        self._bool = lib.IedServer_updateBooleanAttributeValue
        self._int32 = lib.IedServer_updateInt32AttributeValue
        self._quality = lib.IedServer_updateQuality
        self._utc_ms = lib.IedServer_updateUTCTimeAttributeValue
        self._text = lib.IedServer_updateVisibleStringAttributeValue

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the data-model lock: clients see all updates made inside at once."""
        self._lock(self._server)
        try:
            yield
        finally:
            self._unlock(self._server)

    def float(self, attribute: int, value: float) -> None:
        self._float(self._server, attribute, value)

    def boolean(self, attribute: int, value: bool) -> None:
        self._bool(self._server, attribute, value)

    def int32(self, attribute: int, value: int) -> None:
        self._int32(self._server, attribute, value)

    def quality(self, attribute: int, bits: int) -> None:
        self._quality(self._server, attribute, bits)

    def utc_ms(self, attribute: int, milliseconds: int) -> None:
        self._utc_ms(self._server, attribute, milliseconds)

    def text(self, attribute: int, value: str) -> None:
        # VisibleString is ASCII; the attribute holds at most 255 characters.
        self._text(self._server, attribute, value.encode("ascii", "replace")[:255])
