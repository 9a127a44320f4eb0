"""Starts `taskgate serve` for a benchmark: plain HTTP on a free port, a
throwaway data directory, the given settings on top of the defaults."""
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def default_binary():
    """The debug build of `taskgate`, wherever cargo puts it."""
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    return os.path.join(target, "debug", "taskgate")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(binary, admin_password, **settings):
    """Yields (base URL, server process) once the server answers; stops it after.

    `settings` are extra environment variables, e.g. TASKGATE_STORE="memory".
    """
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as data_dir:
        env = dict(os.environ, TASKGATE_ADDR=f"127.0.0.1:{port}", TASKGATE_TLS="off",
                   TASKGATE_DATA_DIR=data_dir, TASKGATE_ADMIN_PASSWORD=admin_password,
                   TASKGATE_LOG="warn", **settings)
        server = subprocess.Popen([binary, "serve"], env=env, stderr=subprocess.DEVNULL)
        try:
            for _ in range(300):
                if server.poll() is not None:
                    sys.exit(f"taskgate exited with status {server.returncode}")
                try:
                    urllib.request.urlopen(base + "/")
                    break
                except OSError:
                    time.sleep(0.1)
            else:
                sys.exit("taskgate did not answer within 30 s")
            yield base, server
        finally:
            server.terminate()
            server.wait()


def call(base, method, path, token=None, body=None):
    """One JSON request to the API; the answer's JSON (None when empty)."""
    request = urllib.request.Request(base + path, method=method)
    if token:
        request.add_header("authorization", f"Bearer {token}")
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        request.add_header("content-type", "application/json")
    with urllib.request.urlopen(request, data) as response:
        return json.loads(response.read() or b"null")
