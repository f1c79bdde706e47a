"""The one HTTP client of the commands: a GET that turns every way of not answering into one short reason."""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request


class NoAnswer(Exception):
    """Nothing answered in HTTP: refused, timed out, not HTTP, a bad URL. The text is the reason."""


def http_get(url: str, timeout: float) -> tuple[int, bytes]:
    """GET `url`; returns (status, body) for any HTTP answer, raises NoAnswer when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except urllib.error.URLError as exc:
        reason = exc.reason
        raise NoAnswer(getattr(reason, "strerror", None) or str(reason)) from None
    except (TimeoutError, OSError) as exc:
        raise NoAnswer(f"no answer within {timeout:g}s" if isinstance(exc, TimeoutError)
                       else (exc.strerror or str(exc))) from None
    except http.client.HTTPException as exc:
        raise NoAnswer(f"not an HTTP answer ({type(exc).__name__})") from None
    except ValueError as exc:
        raise NoAnswer(f"invalid URL {url!r}: {exc}") from None


def local_url(listen_address: str, path: str) -> str:
    """The URL a client on this machine uses for a server listening on HOST:PORT."""
    host, _, port = listen_address.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}{path}"
