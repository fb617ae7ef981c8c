"""Is the tracking store usable? One API call, answered or not, named for what it got.

A tracking server is probed with the call the sink makes first (``experiments/search``),
with the credentials MLflow's client would send, within :data:`PROBE_TIMEOUT_S`. A server
that answers ``/health`` but refuses the API (MLflow 3 refuses a ``Host`` it does not allow
with 403, which is what a default server behind a Kubernetes Service does) is *refused*,
never "up". Local stores (SQLite) have nothing to probe: their failures surface on the
first call.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.parse
import urllib.request

# a tracking server that does not answer this fast is treated as down; generous because a server
# that has just started answers its first API call slowly (it opens its store then)
PROBE_TIMEOUT_S = 10.0
PROBE_PATH = "/api/2.0/mlflow/experiments/search"
# for doodl's own client: MLflow's defaults retry a dead server for minutes per call
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
                 "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 # else every finished run costs one more request (to print its URL) and two lines
                 "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}


class TrackingUnavailable(ConnectionError):
    """The tracking server cannot be used now. ``kind`` says how: ``down`` (no answer:
    refused connection, timeout, unknown host), ``refused`` (it answered and refused the
    API: 401, 403, 404) or ``broken`` (a server error, 5xx)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def tracking_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "tracking is unavailable": MLflow's, the HTTP client's,
    the SQL store's and the operating system's (a server that is down, a locked database)."""
    import requests
    import sqlalchemy.exc
    from mlflow.exceptions import MlflowException

    return MlflowException, requests.exceptions.RequestException, sqlalchemy.exc.SQLAlchemyError, OSError


def one_line(exc: BaseException) -> str:
    """An exception as one short line for a warning."""
    text = f"{type(exc).__name__}: {exc}".strip()
    return (text.splitlines() or [type(exc).__name__])[0][:300]


def is_server(tracking_uri: str) -> bool:
    """True for a tracking server (http/https), which can be probed; False for a local store."""
    return tracking_uri.startswith(("http://", "https://"))


def use_short_http_timeouts() -> None:
    """Make doodl's MLflow client give up on a dead server in seconds, not minutes, and print
    no URL per run (a
    user's own settings of these variables win)."""
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)


def _auth_headers() -> dict[str, str]:
    """What MLflow's client sends: a bearer token, or basic auth (its environment variables)."""
    if os.environ.get("MLFLOW_TRACKING_TOKEN"):
        return {"Authorization": f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}"}
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    return {}


def _server_message(err: urllib.error.HTTPError) -> str:
    """The server's own words: an MLflow error's message, or the body's first line."""
    try:
        body = err.read(4096).decode("utf-8", "replace").strip()
    except OSError:
        body = ""
    try:
        body = json.loads(body).get("message", body)
    except (ValueError, AttributeError):
        pass
    return (body.splitlines() or [err.reason or ""])[0][:200]


def probe(tracking_uri: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Raise :class:`TrackingUnavailable` unless an http(s) tracking server answers an API
    call (``experiments/search``) within ``timeout`` seconds; other stores need no probe."""
    if not is_server(tracking_uri):
        return
    url = tracking_uri.rstrip("/") + PROBE_PATH
    request = urllib.request.Request(url, data=json.dumps({"max_results": 1}).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **_auth_headers()})
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return
    except urllib.error.HTTPError as err:
        message = _server_message(err)
        if err.code >= 500:
            raise TrackingUnavailable("broken", f"{tracking_uri} is broken: its API answered {err.code} "
                                                f"({message})") from None
        fix = ""
        if err.code == 403 and "host" in message.lower():
            host = urllib.parse.urlsplit(tracking_uri).netloc
            fix = (f"; the server must allow this host name: start it with --allowed-hosts {host} "
                   "(or MLFLOW_SERVER_ALLOWED_HOSTS)")
        elif err.code in (401, 403):
            fix = "; set MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME/PASSWORD"
        elif err.code == 404:
            fix = f"; is {tracking_uri} an MLflow tracking server (no {PROBE_PATH})?"
        raise TrackingUnavailable("refused", f"{tracking_uri} refused the API with {err.code} ({message}){fix}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingUnavailable("down", f"no answer from {tracking_uri} within {timeout:g} s ({reason})") from None
