"""The site's nodes polled by several processes (`site.pollers: N > 1`), balanced by one core.

    shares.py   which nodes each poller owns (whole RS-485 lines, about as many units each)
    wire.py     what travels between the core and a poller (node states field by field, never pickle)
    child.py    the poller's entry point (`python -m gateway.southbound.pollers.child`): its nodes'
                sessions (`LocalFieldbus`) on its own uvloop
    process.py  the core's side of one poller: start, read, restart with backoff
    fieldbus.py `PollerFieldbus`, the engine's `Fieldbus` over every poller, within the cycle's budget

With `pollers: 1` (the default) none of this runs: the core polls with `LocalFieldbus` itself.
"""
