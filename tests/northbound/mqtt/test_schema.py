"""The committed Sparkplug B payload module is what protoc makes from the committed schema."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gateway.northbound.mqtt

PACKAGE = Path(gateway.northbound.mqtt.__file__).parent


def test_generated_module_matches_schema(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{PACKAGE}", f"--python_out={tmp_path}",
         f"--pyi_out={tmp_path}", str(PACKAGE / "sparkplug_b.proto")],
        check=True,
    )  # fmt: skip
    for name in ("sparkplug_b_pb2.py", "sparkplug_b_pb2.pyi"):
        assert (tmp_path / name).read_text() == (PACKAGE / name).read_text(), (
            f"{name} is stale: run `make sparkplug` and commit the result"
        )
