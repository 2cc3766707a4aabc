"""Each northbound adapter in its own child process, supervised by the control core.

    channel.py     what travels between the core and a child: snapshot frames (core -> child) and
                   JSON messages (child -> core: ready, failed, submit, log; core -> child: answer)
    child.py       the child's entry point (`python -m gateway.northbound.process.child`): loads the
                   site config, builds and starts one adapter, publishes every snapshot it is sent
    supervisor.py  the core's side: starts the children, feeds them, answers their commands from a
                   thread of their own, restarts one that exits (capped exponential backoff)

So opendnp3 (with the OpenSSL its wheel bundles) and GPL-3 libiec61850 never share a process, and a
crash inside a C stack ends only its own child; the core never imports either stack.
"""
