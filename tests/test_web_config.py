"""basic_auth_users in the web config: a hash that could never let anyone in, or that makes each check a
denial of service, is refused when the config loads, by every command that reads it; a good one lets in."""

from __future__ import annotations

import base64
import urllib.error
import urllib.request

import bcrypt
import pytest
from conftest import cli, free_port
from prometheus_client import CollectorRegistry

from devflow_monitor.core.config import Config
from devflow_monitor.core.webconfig import MAX_BCRYPT_COST, load_web_config
from devflow_monitor.exporter.collectors import CollectorSet
from devflow_monitor.exporter.http import make_server

GOOD = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()

BAD_USERS = {
    "not bcrypt at all": ("admin: '$2y$10$thisisnotavalidbcrypthash'", "not a bcrypt hash"),
    "truncated": (f"admin: '{GOOD[:-5]}'", "not a bcrypt hash"),
    "one character too many": (f"admin: '{GOOD}x'", "not a bcrypt hash"),
    "unknown variant": (f"admin: '{GOOD.replace('$2b$', '$2x$')}'", "not a bcrypt hash"),
    "salt bcrypt cannot read": (f"admin: '{GOOD[:28]}z{GOOD[29:]}'", "not a bcrypt hash"),
    "hash no password matches": (f"admin: '{GOOD[:-1]}z'", "not a bcrypt hash"),
    "one-digit cost": (f"admin: '{GOOD.replace('$04$', '$4$')}'", "not a bcrypt hash"),
    "not a string": ("admin: 12", "not a bcrypt hash"),
    "cost too high to check": (f"admin: '{GOOD.replace('$04$', '$31$')}'", "bcrypt cost 31 is outside"),
    "cost just above the maximum": (f"admin: '{GOOD.replace('$04$', f'${MAX_BCRYPT_COST + 1}$')}'",
                                    f"bcrypt cost {MAX_BCRYPT_COST + 1} is outside"),
    "cost bcrypt refuses": (f"admin: '{GOOD.replace('$04$', '$03$')}'", "bcrypt cost 3 is outside"),
    "integer user name": (f"123: '{GOOD}'", "user name 123 must be a non-empty string"),
    "user name with a colon": (f"'a:b': '{GOOD}'", "user name 'a:b' must be a non-empty string"),
}


@pytest.mark.parametrize("users", BAD_USERS.values(), ids=BAD_USERS.keys())
def test_check_config_refuses_a_user_nobody_could_log_in_as_in_one_line(tmp_path, users):
    entry, expected = users
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  {entry}\n")
    result = cli("check-config", "--web.config.file", str(web))
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_the_refused_hash_is_not_echoed(tmp_path):
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  admin: '{GOOD[:-5]}'\n")
    result = cli("check-config", "--web.config.file", str(web))
    assert result.returncode == 2 and GOOD[:-5] not in result.stderr


def test_serve_and_webdash_refuse_a_bad_hash_before_listening(tmp_path):
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  admin: '{GOOD.replace('$04$', '$31$')}'\n")
    port = free_port()
    serve = cli("serve", "--web.listen-address", f"127.0.0.1:{port}", "--web.config.file", str(web),
                "--devflow.database", str(tmp_path / "x.db"), timeout=30)
    webdash = cli("webdash", "--web.listen-address", f"127.0.0.1:{port}", "--web.config.file", str(web), timeout=30)
    for result in (serve, webdash):
        assert result.returncode == 2, result.stderr
        assert "bcrypt cost 31 is outside" in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_a_cost_4_hash_lets_its_user_in_and_nobody_else(tmp_path):
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  prometheus: '{GOOD}'\n")
    server = make_server("127.0.0.1", 0, Config(), CollectorRegistry(), CollectorSet([]), load_web_config(str(web)))
    server.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/health"
        assert status_of(url, "prometheus:s3cret") == 200
        assert status_of(url, "prometheus:wrong") == 401
        assert status_of(url, "someone:s3cret") == 401
        assert status_of(url, None) == 401
    finally:
        server.stop()


def status_of(url: str, credentials: str | None) -> int:
    request = urllib.request.Request(url)
    if credentials:
        request.add_header("Authorization", "Basic " + base64.b64encode(credentials.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
