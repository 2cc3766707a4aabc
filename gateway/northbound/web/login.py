"""Passwords for the web view's login: scrypt hashes in the site config, never the password itself.

`python -m gateway.northbound.web.login` (on an installed gateway: `/opt/socgw/bin/python -m
gateway.northbound.web.login`) asks for a password twice and prints the hash to paste into
`northbound.web.login.password_hash`.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import os
import sys

SCHEME = "scrypt"
# scrypt cost: about 50 ms and 16 MB per check on an industrial PC; a verified login is remembered.
COST_N, BLOCK_R, PARALLEL_P = 2**14, 8, 1
SALT_BYTES = 16
HASH_BYTES = 32


class PasswordHashError(ValueError):
    """A `password_hash` that is not one this module writes; the message says how to make one."""


def hash_password(password: str, salt: bytes | None = None) -> str:
    """`scrypt$N$r$p$salt$hash` (salt and hash in base64)."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    digest = _scrypt(password, salt, COST_N, BLOCK_R, PARALLEL_P)
    encoded = [base64.b64encode(part).decode("ascii") for part in (salt, digest)]
    return "$".join([SCHEME, str(COST_N), str(BLOCK_R), str(PARALLEL_P), *encoded])


def parse_hash(text: str) -> tuple[int, int, int, bytes, bytes]:
    """The parameters of a `hash_password` result; PasswordHashError when it is not one."""
    parts = text.split("$")
    try:
        if len(parts) != 6 or parts[0] != SCHEME:
            raise ValueError
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, digest = base64.b64decode(parts[4], validate=True), base64.b64decode(parts[5], validate=True)
        if (
            not 2**10 <= n <= 2**20
            or n & (n - 1)
            or not 1 <= r <= 64
            or not 1 <= p <= 16
            or not salt
            or not digest
        ):
            raise ValueError
    except ValueError:
        raise PasswordHashError(
            "is not a password hash made by `python -m gateway.northbound.web.login` "
            "(scrypt$N$r$p$salt$hash): make one with that command"
        ) from None
    return n, r, p, salt, digest


def verify_password(password: str, stored: str) -> bool:
    n, r, p, salt, digest = parse_hash(stored)
    return hmac.compare_digest(_scrypt(password, salt, n, r, p, length=len(digest)), digest)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, *, length: int = HASH_BYTES) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r * p, dklen=length
    )


def main() -> int:
    password = getpass.getpass("password for the web view: ")
    if len(password) < 8:
        print("use at least 8 characters", file=sys.stderr)
        return 1
    if getpass.getpass("again: ") != password:
        print("the two passwords differ", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


if __name__ == "__main__":
    sys.exit(main())
