"""moto's server (as `moto_server` runs it) with two additions the
real-time tests need from the API Gateway management API:

- `GET /_taskgate/posted` answers what moto recorded as posted to each
  connection (`{"<connection id>": "<base64 of the bytes>"}`), read from
  moto's own backend: moto keeps the bytes but does not serve them.
- The management API is served under its stage, as API Gateway serves it
  (`POST /{stage}/@connections/{id}`, the stack's `TASKGATE_WS_ENDPOINT`
  ends in the stage); without a stage API Gateway answers 403, and so does
  this. (moto alone serves it only without a stage.)
- A connection deleted with `DELETE /{stage}/@connections/{id}` is gone: posting to
  it answers 410 GoneException, as API Gateway does (moto alone would accept
  the post and recreate the connection). What was posted to it before stays
  in the record above (moto forgets it with the connection).

- Lambda invocations can reach real code: `POST /_taskgate/lambda-targets`
  with `{"<function name>": "<url>"}` makes every invoke of that function
  (`POST /2015-03-31/functions/{name}/invocations`, which is how moto's
  Step Functions engine runs a Lambda task) a `POST` of the payload to the
  URL; its answer comes back as the invoke's payload, and its
  `X-Amz-Function-Error` header as the invoke's function error; an
  asynchronous invoke (`X-Amz-Invocation-Type: Event`) is answered 202 at
  once and delivered in the background, as Lambda does. Other
  functions keep moto's stub (without Docker it echoes the payload).

- A request signed twice, in its query (a presigned URL's
  `X-Amz-Signature`) and in an `Authorization` header, is refused 400
  `InvalidArgument` ("Only one auth mechanism allowed"), as S3 refuses it
  (moto alone serves it): a browser that carried an API token along a
  redirect to a presigned URL fails here as it would on AWS.

- S3's CORS as S3 answers it: moto grants every Origin whatever the
  bucket's CORS configuration says, so a browser test against it could
  not tell a missing or wrong rule. A request with an `Origin` to a bucket
  (path-style) keeps its `Access-Control-*` headers only when one of the
  bucket's rules allows that origin and method.

Usage: python moto-server.py HOST PORT
"""

import base64
import json
import os
import signal
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request

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
# Function name -> URL its invocations are forwarded to.
lambda_targets = {}
INVOKE_PREFIX = "/2015-03-31/functions/"
INVOKE_SUFFIX = "/invocations"


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


def read_body(environ):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    return environ["wsgi.input"].read(length) if length else b""


def deliver(url, body):
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=960) as answer:
            answer.read()
    except urllib.error.URLError as e:
        print(f"an asynchronous invocation of {url} failed: {e}", file=sys.stderr)


def forward_invocation(environ, start_response, url):
    if environ.get("HTTP_X_AMZ_INVOCATION_TYPE") == "Event":
        body = read_body(environ)
        threading.Thread(target=deliver, args=(url, body), daemon=True).start()
        start_response("202 Accepted", [("Content-Type", "application/json")])
        return [b""]
    request = urllib.request.Request(
        url,
        data=read_body(environ),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        # A step may run as long as a Lambda can (15 minutes).
        with urllib.request.urlopen(request, timeout=960) as answer:
            payload = answer.read()
            error = answer.headers.get("X-Amz-Function-Error")
    except urllib.error.URLError as e:
        return respond(
            start_response,
            "502 Bad Gateway",
            {"message": f"the invocation target {url} failed: {e}"},
        )
    headers = [("Content-Type", "application/json"), ("X-Amz-Executed-Version", "$LATEST")]
    if error:
        headers.append(("X-Amz-Function-Error", error))
    start_response("200 OK", headers)
    return [payload]


def s3_bucket(path):
    """The bucket a path-style S3 request names first, if it exists."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    return s3_backends[DEFAULT_ACCOUNT_ID]["global"].buckets.get(path.lstrip("/").split("/")[0])


def cors_allows(environ, path, method):
    """Whether the bucket named first in `path` has a CORS rule for the
    request's Origin and method (a preflight's requested method)."""
    bucket = s3_bucket(path)
    if bucket is None:
        return False
    origin = environ["HTTP_ORIGIN"]
    if method == "OPTIONS":
        method = environ.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD", "")
    return any(
        method in (rule.allowed_methods or []) and any(o in ("*", origin) for o in rule.allowed_origins or [])
        for rule in bucket.cors
    )


def with_s3_cors(environ, start_response, path, method):
    """moto's answer, without its CORS grant where the bucket gives none."""
    if cors_allows(environ, path, method):
        return moto(environ, start_response)

    def start(status, headers, *rest):
        kept = [(k, v) for k, v in headers if not k.lower().startswith("access-control-")]
        return start_response(status, kept, *rest)

    return moto(environ, start)


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    method = environ.get("REQUEST_METHOD", "")
    if path == "/_taskgate/posted" and method == "GET":
        return respond(start_response, "200 OK", posted())
    if path == "/_taskgate/lambda-targets" and method == "POST":
        lambda_targets.update(json.loads(read_body(environ) or b"{}"))
        return respond(start_response, "200 OK", {"targets": len(lambda_targets)})
    if method == "POST" and path.startswith(INVOKE_PREFIX) and path.endswith(INVOKE_SUFFIX):
        name = urllib.parse.unquote(path[len(INVOKE_PREFIX) : -len(INVOKE_SUFFIX)])
        # A name, a partial ARN or an ARN: the name is after "function:".
        name = name.split("function:")[-1].split(":")[0]
        if name in lambda_targets:
            return forward_invocation(environ, start_response, lambda_targets[name])
    if "X-Amz-Signature=" in environ.get("QUERY_STRING", "") and environ.get("HTTP_AUTHORIZATION"):
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InvalidArgument</Code>'
            "<Message>Only one auth mechanism allowed; only the X-Amz-Algorithm query "
            "parameter, Signature query string parameter or the Authorization header "
            "should be specified</Message></Error>"
        ).encode()
        start_response("400 Bad Request", [("Content-Type", "application/xml")])
        return [body]
    if environ.get("HTTP_ORIGIN") and s3_bucket(path) is not None:
        return with_s3_cors(environ, start_response, path, method)
    if "/@connections/" in path:
        stage, _, rest = path.lstrip("/").partition("/@connections/")
        if not stage or "/" in stage:
            return respond(start_response, "403 Forbidden", {"message": "Forbidden"})
        path = "/@connections/" + rest
        environ["PATH_INFO"] = path
        for raw in ("RAW_URI", "REQUEST_URI"):
            if raw in environ:
                environ[raw] = path
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
