"""moto's server (as `moto_server` runs it) with two additions the
real-time tests need from the API Gateway management API:

- `GET /_taskgate/posted` answers what moto recorded as posted to each
  connection (`{"<connection id>": "<base64 of the bytes>"}`), read from
  moto's own backend: moto keeps the bytes but does not serve them.
- A connection deleted with `DELETE /@connections/{id}` is gone: posting to
  it answers 410 GoneException, as API Gateway does (moto alone would accept
  the post and recreate the connection). What was posted to it before stays
  in the record above (moto forgets it with the connection).

Usage: python moto-server.py HOST PORT
"""

import base64
import json
import os
import signal
import sys

# As moto_server does: moto calls itself back on this port (e.g. Step
# Functions invoking Lambda), so it must be set before moto runs.
if len(sys.argv) > 2:
    os.environ.setdefault("MOTO_PORT", sys.argv[2])

from moto.apigatewaymanagementapi.models import apigatewaymanagementapi_backends
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple

moto = DomainDispatcherApplication(create_backend_app)
moto.debug = True
gone = set()
# Bytes posted to connections that were deleted since.
kept = {}


def live_data():
    recorded = {}
    for regions in apigatewaymanagementapi_backends.values():
        for backend in regions.values():
            for connection, state in list(backend.connections.items()):
                recorded[connection] = recorded.get(connection, b"") + state.data
    return recorded


def posted():
    recorded = dict(kept)
    for connection, data in live_data().items():
        recorded[connection] = recorded.get(connection, b"") + data
    return {c: base64.b64encode(d).decode() for c, d in recorded.items()}


def respond(start_response, status, body, headers=()):
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), *headers])
    return [data]


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    method = environ.get("REQUEST_METHOD", "")
    if path == "/_taskgate/posted" and method == "GET":
        return respond(start_response, "200 OK", posted())
    if "/@connections/" in path:
        connection = path.rsplit("/", 1)[-1]
        if method == "DELETE":
            gone.add(connection)
            data = live_data().get(connection)
            if data:
                kept[connection] = kept.get(connection, b"") + data
        elif connection in gone:
            return respond(
                start_response,
                "410 Gone",
                {"message": None},
                [("x-amzn-ErrorType", "GoneException")],
            )
    return moto(environ, start_response)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    run_simple(
        sys.argv[1],
        int(sys.argv[2]),
        app,
        threaded=True,
        request_handler=MotoRequestHandler,
    )
