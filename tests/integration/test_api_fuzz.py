"""Schema-driven fuzzing of the running control-plane API: no input makes it answer 5xx."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from tests.conftest import ROOT, control_cli

pytestmark = pytest.mark.integration


def test_schemathesis_finds_no_server_error(control_api, control_env):
    tenant_id = f"fuzz{uuid.uuid4().hex[:8]}"
    token = control_cli(control_env, "tenant-create", tenant_id, "Fuzz Hotel")
    control_cli(
        control_env,
        "mailbox-add",
        tenant_id,
        "reservations",
        "--host",
        "127.0.0.1",
        "--username",
        "u@fuzz.test",
        stdin=b"pw\n",
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{control_api}/api/openapi.json",
            "--checks",
            "not_a_server_error",
            "-H",
            f"Authorization: Bearer {token}",
            "--max-examples",
            "25",
            "--seed",
            "7",
            "--request-timeout",
            "10",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
