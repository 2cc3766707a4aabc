"""The status socket's development directory: used only when it is the user's own and private."""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from gateway.paths import development_socket_directory
from gateway.status import prepare_socket_directory
from tests.conftest import socgw_command

pytestmark = pytest.mark.wire  # real stacks, sockets on loopback or child processes

OTHER_UID = 4242


def run_socgw(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`socgw *args` with its temporary directory in `tmp_path` and no XDG_RUNTIME_DIR (the dev default)."""
    env = {name: value for name, value in os.environ.items() if name != "XDG_RUNTIME_DIR"}
    env["TMPDIR"] = str(tmp_path)
    return subprocess.run(
        socgw_command(*args), capture_output=True, text=True, timeout=60, check=False, env=env, cwd=tmp_path
    )


def test_an_absent_development_directory_is_created_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    directory = development_socket_directory()
    assert directory == tmp_path / f"socgw-{os.getuid()}"
    prepare_socket_directory(directory / "socgw-status.sock")
    info = directory.stat()
    assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.getuid()


@pytest.mark.parametrize(
    ("owner", "mode", "shown"),
    [(OTHER_UID, 0o700, f"owned by uid {OTHER_UID} with mode 0700"), (None, 0o777, "mode 0777")],
    ids=["another-users", "world-writable"],
)
def test_a_development_directory_others_control_is_refused(
    tmp_path: Path, owner: int | None, mode: int, shown: str
) -> None:
    directory = tmp_path / f"socgw-{os.getuid()}"
    directory.mkdir()
    directory.chmod(mode)
    if owner is not None:
        os.chown(directory, owner, -1)
    config = tmp_path / "gateway.yaml"
    config.write_text("nodes: []\n")  # no status.socket: the development default

    status = run_socgw(tmp_path, "status")
    gateway = run_socgw(tmp_path, "run", "-c", str(config))

    for result, output in ((status, status.stderr), (gateway, gateway.stdout)):
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"refusing the status socket directory {directory}" in output
        assert shown in output and f"rm -r {directory}" in output
        assert "Traceback" not in result.stdout + result.stderr
    assert list(directory.iterdir()) == []  # nothing bound, no lock file planted
