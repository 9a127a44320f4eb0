"""The AWS deployment as far as the cost section needs it, in Python (the
Rust emulation of tests/src/deployment does the same for the end-to-end
tests, on debug builds): function binaries under an emulated Lambda Runtime
API, API Gateway (v2) events, and counting proxies in front of DynamoDB
Local and moto that record what every call consumed.

- `CountingProxy` forwards every request unchanged but for one thing: a
  DynamoDB request that can report its consumed capacity is sent with
  `ReturnConsumedCapacity: INDEXES` (DynamoDB Local checks no signature),
  and the units of the answer are recorded per operation, table and index.
  Requests to moto are recorded as the API operation they are (S3 by method
  and query, the JSON APIs by their `X-Amz-Target`).
- `LambdaFunction` runs one binary as Lambda runs it: `invoke(event)`
  hands it an event through `/runtime/invocation/next` and waits for its
  answer; each invocation's duration (next → response, what Lambda
  bills), the CPU time the process used meanwhile and the bytes it logged
  are recorded.
- `InvokeEndpoint` is where moto's Lambda forwards the state machine's
  invocations (infra/local/moto-server.py, `/_taskgate/lambda-targets`).
"""
import base64
import http.client
import http.server
import json
import os
import queue
import re
import subprocess
import threading
import time
import urllib.parse
import uuid

# DynamoDB operations whose answer can carry ConsumedCapacity, and which of
# them write.
CAPACITY_OPERATIONS = {"GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan",
                       "BatchGetItem", "BatchWriteItem", "TransactGetItems", "TransactWriteItems"}
WRITE_OPERATIONS = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-connection", "content-length", "host"}


class Ledger:
    """What went through the proxies, counted. `snapshot()` and `since()`
    give what one operation of the benchmark cost."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = {}   # (service, operation) -> count
        self.units = {}      # ("read" | "write", table or "table/index") -> units

    def add_request(self, service, operation):
        with self.lock:
            key = (service, operation)
            self.requests[key] = self.requests.get(key, 0) + 1

    def add_units(self, kind, where, units):
        with self.lock:
            self.units[(kind, where)] = self.units.get((kind, where), 0.0) + units

    def snapshot(self):
        with self.lock:
            return dict(self.requests), dict(self.units)

    def since(self, snapshot):
        requests, units = snapshot
        with self.lock:
            return ({k: v - requests.get(k, 0) for k, v in self.requests.items() if v - requests.get(k, 0)},
                    {k: v - units.get(k, 0.0) for k, v in self.units.items() if v - units.get(k, 0.0) > 1e-9})


def s3_operation(method, path, query, headers):
    """The S3 API operation a request is, from its method and query."""
    q = urllib.parse.parse_qs(query, keep_blank_values=True)
    key_present = path.strip("/").count("/") >= 1
    if method == "POST" and "uploads" in q:
        return "CreateMultipartUpload"
    if method == "POST" and "uploadId" in q:
        return "CompleteMultipartUpload"
    if method == "POST" and "delete" in q:
        return "DeleteObjects"
    if method == "PUT" and "partNumber" in q:
        return "UploadPartCopy" if "x-amz-copy-source" in headers else "UploadPart"
    if method == "DELETE" and "uploadId" in q:
        return "AbortMultipartUpload"
    if method == "GET" and "uploadId" in q:
        return "ListParts"
    if method == "GET" and "uploads" in q:
        return "ListMultipartUploads"
    if method == "GET" and not key_present:
        return "ListObjectsV2" if q.get("list-type") == ["2"] else "ListObjects"
    if method == "PUT" and not key_present:
        return "CreateBucket"
    if method == "PUT":
        return "CopyObject" if "x-amz-copy-source" in headers else "PutObject"
    return {"GET": "GetObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}.get(method, method)


def service_of(headers, query):
    """The service a request to moto is for (the credential scope of its
    signature, in the header or, presigned, in the query)."""
    authorization = headers.get("authorization", "")
    found = re.search(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/", authorization)
    if found:
        return found.group(1)
    credential = urllib.parse.parse_qs(query).get("X-Amz-Credential", [""])[0]
    parts = credential.split("/")
    return parts[3] if len(parts) > 3 else "?"


class CountingProxy:
    """Forwards everything to `upstream` (http://host:port); see the module's
    docs for what it records in `ledger`."""

    def __init__(self, upstream, ledger):
        self.upstream = urllib.parse.urlsplit(upstream).netloc
        self.ledger = ledger
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_):
                pass

            def body(self):
                if self.headers.get("transfer-encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                length = int(self.headers.get("content-length") or 0)
                return self.rfile.read(length) if length else b""

            def forward(self):
                body = self.body()
                headers = {k.lower(): v for k, v in self.headers.items()}
                path, _, query = self.path.partition("?")
                target = headers.get("x-amz-target", "")
                dynamodb = target.startswith("DynamoDB_")
                operation = None
                if dynamodb:
                    operation = target.split(".", 1)[1]
                    if operation in CAPACITY_OPERATIONS:
                        request = json.loads(body or b"{}")
                        request["ReturnConsumedCapacity"] = "INDEXES"
                        body = json.dumps(request).encode()
                    proxy.ledger.add_request("dynamodb", operation)
                else:
                    service = service_of(headers, query)
                    if target:
                        proxy.ledger.add_request(service, target.split(".", 1)[-1])
                    elif service == "s3":
                        proxy.ledger.add_request("s3", s3_operation(self.command, path, query, headers))
                    else:
                        proxy.ledger.add_request(service, f"{self.command} {path}")
                forwarded = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                forwarded["Host"] = proxy.upstream
                forwarded["Content-Length"] = str(len(body))
                connection = http.client.HTTPConnection(proxy.upstream, timeout=120)
                try:
                    connection.request(self.command, self.path, body=body if body or self.command in
                                       ("POST", "PUT", "PATCH") else None, headers=forwarded)
                    answer = connection.getresponse()
                    data = answer.read()
                    if dynamodb and operation in CAPACITY_OPERATIONS and answer.status == 200:
                        record_capacity(proxy.ledger, operation, json.loads(data or b"{}"))
                    self.send_response(answer.status)
                    for name, value in answer.getheaders():
                        if name.lower() not in HOP_BY_HOP:
                            self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    connection.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def record_capacity(ledger, operation, answer):
    kind = "write" if operation in WRITE_OPERATIONS else "read"
    consumed = answer.get("ConsumedCapacity")
    if consumed is None:
        return
    for entry in consumed if isinstance(consumed, list) else [consumed]:
        table = entry.get("TableName", "?")
        counted = 0.0
        if "Table" in entry:
            units = entry["Table"].get("CapacityUnits", 0.0)
            ledger.add_units(kind, table, units)
            counted += units
        for index_kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            for index, value in entry.get(index_kind, {}).items():
                units = value.get("CapacityUnits", 0.0)
                ledger.add_units(kind, f"{table}/{index}", units)
                counted += units
        rest = entry.get("CapacityUnits", 0.0) - counted
        if rest > 1e-9:
            ledger.add_units(kind, table, rest)


def cpu_seconds(pid):
    """utime + stime of a process and its reaped children, in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))
    return ticks / os.sysconf("SC_CLK_TCK")


class LambdaFunction:
    """One function's container: its process and its Runtime API."""

    def __init__(self, name, binary, environment, log_path, memory_mb):
        self.name, self.memory_mb, self.log_path = name, memory_mb, log_path
        self.events = queue.Queue()
        self.waiting = {}
        self.lock = threading.Lock()
        self.invocations = []   # (label, duration ms, cpu ms, log bytes)
        function = self

        class Runtime(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_):
                pass

            def do_GET(self):
                if not self.path.endswith("/runtime/invocation/next"):
                    self.send_error(404)
                    return
                request_id, event, pending = function.events.get()
                pending["started"] = time.perf_counter()
                pending["cpu"] = cpu_seconds(function.process.pid)
                pending["log"] = os.path.getsize(function.log_path)
                with function.lock:
                    function.waiting[request_id] = pending
                data = json.dumps(event).encode()
                self.send_response(200)
                self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
                self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 900_000))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn",
                                 f"arn:aws:lambda:us-east-1:123456789012:function:{function.name}")
                self.send_header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = self.path.split("/")
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()
                if "invocation" in parts and len(parts) >= 6:
                    request_id, kind = parts[4], parts[5]
                    with function.lock:
                        pending = function.waiting.pop(request_id, None)
                    if pending is not None:
                        pending["ended"] = time.perf_counter()
                        pending["kind"] = kind
                        pending["body"] = body
                        pending["done"].set()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Runtime)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        env = dict(environment, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{self.server.server_address[1]}",
                   AWS_LAMBDA_FUNCTION_NAME=name, AWS_LAMBDA_FUNCTION_MEMORY_SIZE=str(memory_mb),
                   AWS_LAMBDA_FUNCTION_VERSION="$LATEST", AWS_LAMBDA_LOG_GROUP_NAME=f"/aws/lambda/{name}",
                   AWS_LAMBDA_LOG_STREAM_NAME="emulated")
        self.log = open(log_path, "wb")
        self.process = subprocess.Popen([binary], env=env, stdin=subprocess.DEVNULL, stdout=self.log,
                                        stderr=self.log)

    def invoke(self, event, label=None, limit=900):
        """The function's answer to `event`: (kind "response" | "error", body)."""
        pending = {"done": threading.Event()}
        self.events.put((str(uuid.uuid4()), event, pending))
        if not pending["done"].wait(limit):
            raise SystemExit(f"{self.name}: no answer within {limit} s; its log is {self.log_path}")
        # The log line of the request is written before the answer is sent.
        self.log.flush()
        log_bytes = os.path.getsize(self.log_path) - pending["log"]
        cpu = cpu_seconds(self.process.pid) - pending["cpu"]
        self.invocations.append((label, (pending["ended"] - pending["started"]) * 1000, cpu * 1000,
                                 log_bytes))
        return pending["kind"], pending["body"]

    def stop(self):
        self.process.kill()
        self.process.wait()
        self.server.shutdown()
        self.server.server_close()
        self.log.close()


def api_gateway_event(method, path_and_query, route, headers, body=None, binary=False):
    """An API Gateway HTTP API (payload 2.0) event, as the Rust emulation
    builds it (tests/src/deployment/mod.rs)."""
    path, _, query = path_and_query.partition("?")
    head = {"host": "api0test.execute-api.us-east-1.amazonaws.com", "x-forwarded-proto": "https"}
    head.update({k.lower(): v for k, v in headers.items()})
    event = {
        "version": "2.0", "routeKey": f"{method} {route}", "rawPath": path, "rawQueryString": query,
        "headers": head,
        "requestContext": {
            "accountId": "123456789012", "apiId": "api0test",
            "domainName": "api0test.execute-api.us-east-1.amazonaws.com", "domainPrefix": "api0test",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.10",
                     "userAgent": "taskgate-cost-benchmark"},
            "requestId": str(uuid.uuid4()), "routeKey": f"{method} {route}", "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
            "timeEpoch": int(time.time() * 1000)},
        "isBase64Encoded": False,
    }
    parameters = {}
    for template, actual in zip(route.strip("/").split("/"), path.strip("/").split("/")):
        if template.startswith("{") and template.endswith("}"):
            parameters[template[1:-1].rstrip("+")] = actual
    if parameters:
        event["pathParameters"] = parameters
    if query:
        event["queryStringParameters"] = {k: v[-1] for k, v in urllib.parse.parse_qs(query).items()}
    if body is not None:
        if binary:
            event["body"] = base64.b64encode(body).decode()
            event["isBase64Encoded"] = True
        else:
            event["body"] = body.decode()
    return event


class HttpAnswer:
    def __init__(self, response):
        self.status = response.get("statusCode", 0)
        self.headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
        for name, values in (response.get("multiValueHeaders") or {}).items():
            self.headers[name.lower()] = ", ".join(values)
        text = response.get("body") or ""
        self.body = base64.b64decode(text) if response.get("isBase64Encoded") else text.encode()

    def json(self):
        return json.loads(self.body or b"null")


class InvokeEndpoint:
    """`POST /invoke/{name}` runs function `name` of `functions` and answers
    as Lambda's invoke API does (`X-Amz-Function-Error` on a failure)."""

    def __init__(self, functions):
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_):
                pass

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                event = json.loads(self.rfile.read(length) or b"null")
                name = self.path.rsplit("/", 1)[-1]
                kind, body = functions[name].invoke(event, label=name)
                self.send_response(200)
                if kind == "error":
                    self.send_header("X-Amz-Function-Error", "Unhandled")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()
