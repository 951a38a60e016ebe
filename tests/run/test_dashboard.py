"""`--dashboard`: its URL and how to get the token are printed, its state API answers only with
the token, shows each trial under its readable name, and listens on 127.0.0.1 only.

The same live run also carries the check of tests/run/test_listeners.py (issue 16): every
listening TCP socket of the run's processes (GCS, raylet, workers, and here the dashboard and
its agents too) is on the loopback, and the auth token the run created is 0600. One local Ray
start proves both."""

from __future__ import annotations

import json
import stat
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.run.cluster_fixtures import (
    RAY,
    base_env,
    listening_sockets,
    live_run,
    tiny_suite,
    wait_for_listeners,
)

pytestmark = [pytest.mark.slow, pytest.mark.ray]

LOOPBACK = {"127.0.0.1", "::1"}


def get(url: str, token: str | None) -> tuple[int, dict]:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, {}


def actor_names(url: str, token: str) -> set[str]:
    status, body = get(f"{url}/api/v0/actors?detail=1&limit=100", token)
    assert status == 200, body
    return {a.get("repr_name") or "" for a in body["data"]["result"]["result"]}


def test_dashboard_url_token_names_and_loopback(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    # Two trials, long enough to be watched (the run is ended by the test).
    suite = tiny_suite(tmp_path, "dash", losses=("hal", "nca"), epochs=200)
    trial_ids = {"synthetic-hal-b64-d16-s0", "synthetic-nca-b64-d16-s0"}
    with live_run(suite, tmp_path / "run", home, "--dashboard", "--num-cpus", "2") as run:
        line = run.wait_for("Ray dashboard: ")
        assert "ray get-auth-token" in line and "Authorization: Bearer" in line, line
        url = line.split("Ray dashboard: ", 1)[1].split()[0]
        assert urlparse(url).hostname == "127.0.0.1"
        token = (home / ".ray" / "auth_token").read_text().strip()
        printed = subprocess.run(
            [RAY, "get-auth-token"], env=base_env(HOME=str(home)), capture_output=True, text=True
        )
        assert printed.stdout.strip() == token  # the command the message names gives it

        assert get(f"{url}/api/v0/actors", None)[0] == 401
        deadline = time.monotonic() + 300
        while not trial_ids <= (names := actor_names(url, token)):
            assert time.monotonic() < deadline, f"trial actors not seen: {names}"
            assert run.proc.poll() is None, run.output()[-3000:]
            time.sleep(2)

        port = urlparse(url).port
        dashboard = [s for s in listening_sockets(run.pids()) if s[1] == port]
        assert dashboard and {ip for ip, _, _ in dashboard} == {"127.0.0.1"}, dashboard

        # Every listener of the run, not only the dashboard's, stays on the loopback.
        sockets = wait_for_listeners(run.pids)
        exposed = [s for s in sockets if s[0] not in LOOPBACK]
        assert not exposed, f"listening beyond the loopback: {exposed}"
    # Token mode is on (the 401 above) without Ray's banner saying so on every start.
    assert "Token authentication is enabled" not in run.output()
    token = home / ".ray" / "auth_token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600  # created by halbench, not by Ray
