"""Web config files in the format of Prometheus' exporter-toolkit (`tls_server_config`, `basic_auth_users`
with bcrypt hashes): checked at load, then applied by every HTTP server of this project.
"""

from __future__ import annotations

import base64
import hashlib
import re
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

from devflow_monitor.core.loader import ConfigError

WEB_CONFIG_KEYS = {"tls_server_config", "basic_auth_users", "http_server_config"}
# exporter-toolkit's keys that Python's ssl module can honour; the others are refused, not ignored.
TLS_KEYS = {"cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version", "max_version"}
# RequestClientCert and RequireAnyClientCert (accept unverified certificates) have no ssl equivalent.
CLIENT_AUTH_TYPES = {"NoClientCert": ssl.CERT_NONE, "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
                     "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}
TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
# Each step of bcrypt's cost doubles a check: 14 takes about a second, 31 keeps a core busy over a day.
MAX_BCRYPT_COST = 14
# Modular crypt format: variant, two-digit cost, 22 characters of salt and 31 of hash in bcrypt's base64.
# The last salt and hash characters carry unused bits, so only some letters are canonical there: bcrypt
# refuses any other salt ending ("Invalid salt" at every request), and no password matches any other
# hash ending.
BCRYPT_HASH = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{21}[.Oeu][./A-Za-z0-9]{30}[.CGKOSWaeimquy26]\Z")
BCRYPT_FORMAT = "$2a$, $2b$ or $2y$, a two-digit cost, then 53 characters of ./A-Za-z0-9"


def load_web_config(path: str) -> dict:
    """Read and check an exporter-toolkit web config; raises ConfigError."""
    try:
        data = yaml.safe_load(Path(path).expanduser().read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read web config: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: web config must be a mapping")
    unknown = set(data) - WEB_CONFIG_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown web config key '{sorted(unknown)[0]}'")
    if "http_server_config" in data:
        raise ConfigError(f"{path}: http_server_config is not supported by this exporter")
    tls = data.get("tls_server_config") or {}
    if not isinstance(tls, dict):
        raise ConfigError(f"{path}: tls_server_config must be a mapping")
    if tls:
        unknown = set(tls) - TLS_KEYS
        if unknown:
            raise ConfigError(f"{path}: unsupported tls_server_config key '{sorted(unknown)[0]}'")
        for key in ("cert_file", "key_file"):
            if not isinstance(tls.get(key), str) or not tls[key]:
                raise ConfigError(f"{path}: tls_server_config needs {key} (a file name)")
        for key in ("min_version", "max_version"):
            if key in tls and tls[key] not in TLS_VERSIONS:
                raise ConfigError(f"{path}: tls_server_config.{key} must be one of {', '.join(TLS_VERSIONS)}")
        auth = tls.get("client_auth_type", "NoClientCert")
        if auth not in CLIENT_AUTH_TYPES:
            raise ConfigError(f"{path}: tls_server_config.client_auth_type must be one of "
                              f"{', '.join(CLIENT_AUTH_TYPES)}, got {auth!r}")
        if CLIENT_AUTH_TYPES[auth] != ssl.CERT_NONE and not isinstance(tls.get("client_ca_file"), str):
            raise ConfigError(f"{path}: client_auth_type {auth} needs client_ca_file")
        try:
            _ssl_context(tls, Path(path).expanduser().parent)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"{path}: cannot load TLS certificate or key: {exc}") from None
    _check_users(path, data.get("basic_auth_users") or {})
    data["_base_dir"] = str(Path(path).expanduser().resolve().parent)
    return data


def _check_users(path: str, users) -> None:
    """Refuse what would fail at every request instead: a user who can never log in, a hash bcrypt
    cannot read or that no password matches, a cost that makes each check a denial of service."""
    if not isinstance(users, dict):
        raise ConfigError(f"{path}: basic_auth_users must map user names to bcrypt hashes")
    for user, hashed in users.items():
        if not isinstance(user, str) or not user or ":" in user:
            # Basic auth sends "user:password", so a name with ":" is cut there and never matches.
            raise ConfigError(f"{path}: basic_auth_users: user name {user!r} must be a non-empty string "
                              f"without ':' (quote it in YAML)")
        match = BCRYPT_HASH.match(hashed) if isinstance(hashed, str) else None
        if not match:
            # The hash itself is not echoed: it is a secret's digest.
            raise ConfigError(f"{path}: basic_auth_users.{user}: not a bcrypt hash ({BCRYPT_FORMAT})")
        cost = int(match.group(1))
        if not 4 <= cost <= MAX_BCRYPT_COST:
            raise ConfigError(f"{path}: basic_auth_users.{user}: bcrypt cost {cost} is outside 4-{MAX_BCRYPT_COST}; "
                              f"hash the password again, e.g. with cost 10")


def _ssl_context(tls: dict, base_dir: Path) -> ssl.SSLContext:
    def resolve(name):
        return str(base_dir / Path(tls[name]).expanduser())

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_VERSIONS[tls.get("min_version", "TLS12")]
    if "max_version" in tls:
        context.maximum_version = TLS_VERSIONS[tls["max_version"]]
    context.load_cert_chain(resolve("cert_file"), resolve("key_file"))
    if tls.get("client_ca_file"):
        context.load_verify_locations(resolve("client_ca_file"))
    context.verify_mode = CLIENT_AUTH_TYPES[tls.get("client_auth_type", "NoClientCert")]
    return context


class BasicAuth:
    """Checks credentials against bcrypt hashes; caches successes since bcrypt costs ~50 ms per check."""

    def __init__(self, users: dict[str, str]):
        self.users = users
        self._decoy = next(iter(users.values()), "")
        self._verified: set[bytes] = set()
        self._lock = threading.Lock()

    def allows(self, header: str | None) -> bool:
        if not self.users:
            return True
        scheme, _, credentials = (header or "").strip().partition(" ")
        if scheme.lower() != "basic":  # auth schemes are case-insensitive (RFC 7617, RFC 9110 11.1)
            return False
        try:
            user, _, password = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        digest = hashlib.sha256(f"{user}\0{password}".encode()).digest()
        with self._lock:
            if digest in self._verified:
                return True
        import bcrypt  # only needed when basic auth is configured

        # Unknown users cost a bcrypt check too, so timing does not tell which names exist.
        hashed = self.users.get(user, self._decoy)
        if bcrypt.checkpw(password.encode(), hashed.encode()) and user in self.users:
            with self._lock:
                self._verified.add(digest)
            return True
        return False


def authorized(handler: BaseHTTPRequestHandler, auth: BasicAuth) -> bool:
    """True when the request's credentials pass; otherwise answers 401 and returns False."""
    if auth.allows(handler.headers.get("Authorization")):
        return True
    handler.send_response(401)
    handler.send_header("WWW-Authenticate", 'Basic realm="devflow-monitor"')
    handler.send_header("Content-Length", "0")
    handler.end_headers()
    return False


def serve_tls(server: ThreadingHTTPServer, web_config: dict | None) -> None:
    """Wrap a bound server's socket in TLS when the web config has a tls_server_config."""
    tls = (web_config or {}).get("tls_server_config")
    if tls:
        context = _ssl_context(tls, Path(web_config["_base_dir"]))
        # The handshake then happens in the request's thread, so a slow client cannot stall accept().
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
