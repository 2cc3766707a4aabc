"""What every protocol adapter shares, below the adapters (imports only the core):

    sources.py   the named quantities a map publishes (`fleet.*`, `node.*`), computed from a snapshot
    quality.py   the quality kind of a published value (good, stale, offline, missing)
    changes.py   the change tracker: what changed since the last cycle, and what passed its deadband
    controls.py  the control table: what a master's write changes, its range, the site command it makes
    dnp3.py      the DNP3 point maps (`mappings/dnp3/`)
    iec61850.py  the IEC 61850 maps (`mappings/iec61850/`)

Nothing here imports `gateway.northbound`: the adapters import this, and a new protocol adds its map
format and its status table, not another copy of these rules.
"""
