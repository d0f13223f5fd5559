from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys
import time

import httpx
import pytest

from sandbox.world import World

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.slow
def test_gunicorn_serves_the_sandbox_from_a_state_file(tmp_path: pathlib.Path) -> None:
    world = World()
    world.nuki.add_smartlock("served-token", 42, "Served Door")
    state = tmp_path / "state.json"
    state.write_text(world.to_json())
    port = _free_port()
    gunicorn = pathlib.Path(sys.executable).with_name("gunicorn")
    proc = subprocess.Popen(
        [
            str(gunicorn),
            "--workers",
            "1",
            "--threads",
            "4",
            "--bind",
            f"127.0.0.1:{port}",
            "sandbox.app:get_app()",
        ],
        cwd=ROOT,
        env=os.environ | {"TENANTCTL_SANDBOX_STATE": str(state)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 4.0
        while True:
            try:
                resp = httpx.get(
                    f"http://127.0.0.1:{port}/nuki/smartlock",
                    headers={"Authorization": "Bearer served-token"},
                    timeout=0.5,
                )
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        assert resp.status_code == 200
        assert resp.json()[0]["name"] == "Served Door"
    finally:
        proc.terminate()
        proc.wait(timeout=5)
