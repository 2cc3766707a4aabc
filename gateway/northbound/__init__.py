"""Northbound: the fleet served to SCADA masters, and their commands taken in.

    adapter.py   what every adapter offers the daemon (start, publish, stop) and is given (submit)
    registry.py  which package serves which `northbound:` section; check and create them all
    tls.py       checks of TLS files (readable, unexpired, key matches certificate) shared by every adapter
    dnp3/        the DNP3 outstation (yadnp3 / opendnp3)
    iec61850/    the IEC 61850 MMS server (pyiec61850-ng / libiec61850)

Each protocol package exposes `SECTION`, `check(site)` and `create(site, submit)`; what a point or data
object shows comes from `gateway.mapping` (named quantities and maps). Packages never import each other.
"""
