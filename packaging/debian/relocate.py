"""Make the environment built in the package's build tree name only its installed place, /opt/socgw.

Usage: relocate.py BUILT_PREFIX PREFIX   (run by debian/rules after pip, before byte-compiling)

pip writes the build directory into the console scripts' #! lines and `python -m venv` into pyvenv.cfg;
the distributions' RECORDs list the scripts' hashes, and files removed after installation (activate
scripts, console scripts the appliance does not ship). Left as they are, the package would
depend on where it was built, so two builds in different directories would differ.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import sys
from pathlib import Path


def record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def relocate_scripts(bin_dir: Path, built: str, prefix: str) -> set[Path]:
    """Rewrite the #! lines that name the build directory; the scripts rewritten."""
    old, new = f"#!{built}/bin/".encode(), f"#!{prefix}/bin/".encode()
    rewritten = set()
    for script in sorted(bin_dir.iterdir()):
        if script.is_file() and not script.is_symlink() and script.read_bytes().startswith(old):
            script.write_bytes(new + script.read_bytes()[len(old) :])
            rewritten.add(script.resolve())
    return rewritten


def relocate_venv_config(config: Path, built: str, prefix: str) -> None:
    config.write_text(config.read_text(encoding="utf-8").replace(built, prefix), encoding="utf-8")


def refresh_record(record: Path, rewritten: set[Path]) -> None:
    """Drop the rows of files that are gone; give the rewritten scripts their new hash and size."""
    site = record.parent.parent
    rows = []
    for name, digest, size in csv.reader(io.StringIO(record.read_text(encoding="utf-8"))):
        file = (site / name).resolve()
        if not file.exists():
            continue
        if file in rewritten:
            data = file.read_bytes()
            rows.append([name, record_hash(data), str(len(data))])
        else:
            rows.append([name, digest, size])
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    record.write_text(out.getvalue(), encoding="utf-8")


def main(argv: list[str]) -> int:
    built, prefix = argv[1].rstrip("/"), argv[2].rstrip("/")
    root = Path(built)
    rewritten = relocate_scripts(root / "bin", built, prefix)
    relocate_venv_config(root / "pyvenv.cfg", built, prefix)
    for record in sorted(root.glob("lib/python3.*/site-packages/*.dist-info/RECORD")):
        refresh_record(record, rewritten)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
