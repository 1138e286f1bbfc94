"""What the tests share besides fixtures: settings, waiting, the servers a test starts (the
app in a thread, `reactions serve` in a child process) and a site owner's page."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

from werkzeug.serving import make_server
from werkzeug.wrappers import Response

from widget import create_app

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SECRET = "test-secret-key-0123456789"
# Votes from agents that look automated are not counted; tests act as a real browser.
BROWSER_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/156.0.0.0 Safari/537.36"
)
# Most tests send many votes from one address; the rate-limit tests set their own limits.
# The session's Redis shares two cores and a disk with Chromium and server processes: a stall
# of half a second there is the machine, not the product. Tests of the timeout itself
# (test_exact.py, test_outage.py) run their apps with the real default or their own figure.
PATIENT_REDIS = {"REACTIONS_REDIS_TIMEOUT": 5.0}
NO_LIMITS = {
    "REACTIONS_RATE_PER_MINUTE": 10_000_000,
    "REACTIONS_ADDRESS_RATE_PER_MINUTE": 10_000_000,
    "REACTIONS_SITE_RATE_PER_SECOND": 10_000_000,
    "REACTIONS_NEW_ARTICLES_PER_HOUR": 10_000_000,
}


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02):
    """Poll instead of sleeping: returns the first truthy value or fails at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def admin_app(redis_url: str, password: str):
    """An app with an admin password and no login slow-down, for the admin tests."""
    return create_app(
        {
            "REDIS_URL": redis_url,
            "REACTIONS_SECRET_KEY": SECRET,
            "REACTIONS_ADMIN_PASSWORD": password,
            "REACTIONS_LOGIN_DELAY": 0,
        }
        | NO_LIMITS
        | PATIENT_REDIS
    )


class LiveServer:
    def __init__(self, app):
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def host_page(html: str):
    """A site owner's page on another origin (another port): yields its URL."""
    page_server = make_server(
        "127.0.0.1", 0, lambda environ, start: Response(html, mimetype="text/html")(environ, start)
    )
    threading.Thread(target=page_server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{page_server.server_port}/"
    finally:
        page_server.shutdown()
        page_server.server_close()


def chromium_path() -> str | None:
    return (
        os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`reactions serve` in a child process, as an operator starts it; `options` are more
    of serve's options."""

    def __init__(self, data_dir, workers: int = 1, options: tuple[str, ...] = (), **env):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.options = options
        self.env = {**os.environ, "REACTIONS_DATA_DIR": str(data_dir), "REDIS_URL": "", **env}

    def start(self):
        # Its own session, so a test can kill the whole server (gunicorn and workers) at once.
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "widget.cli",
                "serve",
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
                *self.options,
            ],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        # Drain the server's output as it comes: a full pipe would block the server.
        self.output: list[str] = []
        self.drain = threading.Thread(
            target=lambda: self.output.extend(iter(self.process.stdout.readline, "")), daemon=True
        )
        self.drain.start()
        wait_until(lambda: self.ready(), timeout=30, interval=0.1)
        return self

    def ready(self):
        assert self.process.poll() is None, "".join(self.output)
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)
        self.drain.join(timeout=10)  # reads to the end of the output
        return self.process.returncode, "".join(self.output)

    def vote(self, reader, reaction, article="durable"):
        body = {"site": "demo", "article": article, "reader": reader, "reaction": reaction}
        request = urllib.request.Request(
            f"{self.url}/api/v1/reactions",
            data=json.dumps(body).encode(),
            headers={
                "Content-Type": "application/json",
                "Origin": self.url,
                "User-Agent": BROWSER_UA,
            },
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())

    def counts(self, article="durable"):
        url = f"{self.url}/api/v1/reactions?site=demo&article={article}"
        with urllib.request.urlopen(url, timeout=5) as response:
            return {r["id"]: r["count"] for r in json.loads(response.read())["reactions"]}


def request_json(
    url: str, body: dict | None = None, origin: str | None = None, timeout: float = 30.0
) -> tuple:
    """(status, headers, parsed JSON or the raw text, seconds) of a GET, or of a POST of
    `body` from the page `origin`, as a browser sends it. The default patience measures a
    slow answer instead of cutting it off; a short `timeout` makes a hung worker fail."""
    headers = {"User-Agent": BROWSER_UA}
    if body is not None:
        headers |= {"Content-Type": "application/json", "Origin": origin}
    request = urllib.request.Request(
        url, data=json.dumps(body).encode() if body else None, headers=headers
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, answer_headers, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, answer_headers, raw = error.code, error.headers, error.read()
    elapsed = time.monotonic() - started
    try:
        payload = json.loads(raw)
    except ValueError:
        payload = raw.decode(errors="replace")
    return status, dict(answer_headers), payload, elapsed
