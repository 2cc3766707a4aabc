"""The front door of every listening protocol stack (DNP3, IEC 61850): socgw takes the TCP connection
itself, lets in only who may enter, terminates TLS on the system's OpenSSL, and splices the bytes to
the stack's private listener, which nobody else can reach.

    sniff.py    the first frame of each protocol (DNP3 link header with its CRC; TPKT + COTP CR)
    policy.py   the allow-list and the connection rate per source address
    secure.py   the TLS context (TLS 1.2 AEAD suites and 1.3, mutual X.509) and the client's identity
    private.py  the stack's private loopback listener, sealed with a TCP-MD5 key only this process holds
    audit.py    one structured line per connection, refusal and TLS failure; the counters
    door.py     the asyncio server: admission, first-frame timeout, session caps, the splice

It runs in the adapter's child process (`gateway.northbound.process.child`), on the child's loop.
"""
