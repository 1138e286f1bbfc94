"""The deployment recipe of deploy/, as an operator runs it: Debian's nginx with the shipped
site config in front of `reactions serve` (plain HTTP on 127.0.0.1 instead of TLS, the only
change), and the systemd unit checked as systemd reads it."""

from __future__ import annotations

import configparser
import contextlib
import http.client
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.servers import BROWSER_UA, NO_LIMITS, Server, free_port, wait_until
from widget.cli import serve
from widget.embed import embed_script

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
# The README's API table: the embed script cached 5 minutes then revalidated, its versioned
# address for a year.
FIVE_MINUTES, ONE_YEAR = 300, 365 * 24 * 3600
# Votes one address may send to the demo site per minute, in the servers below.
ADDRESS_BUDGET = 3


def nginx_path() -> str:
    path = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if not path:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true needs nginx for the deployment tests: apt-get install nginx")
        pytest.skip("nginx is not installed (apt-get install nginx); deployment test skipped")
    return path


def site_config(port: int, http_port: int, upstream: int) -> str:
    """deploy/nginx-reactions.conf with its "# test: …" lines made local: plain HTTP on
    127.0.0.1 instead of HTTPS, the test's app server as the upstream. Nothing else changes."""
    local = {
        "upstream": f"server 127.0.0.1:{upstream};",
        "http": f"listen 127.0.0.1:{http_port};",
        "https": f"listen 127.0.0.1:{port};",
        "ipv6": None,
        "tls": None,
    }
    lines, seen = [], []
    for line in (DEPLOY / "nginx-reactions.conf").read_text().splitlines():
        code, marker, kind = line.partition("# test: ")
        if not marker:
            lines.append(line)
            continue
        seen.append(kind.strip())
        if local[kind.strip()] is not None:
            indent = code[: len(code) - len(code.lstrip())]
            lines.append(indent + local[kind.strip()])
    # The file must still have the lines this test replaces, once each where it matters.
    assert sorted(set(seen)) == sorted(local), seen
    assert [seen.count(kind) for kind in ("upstream", "http", "https")] == [1, 1, 1], seen
    return "\n".join(lines) + "\n"


class Nginx:
    """Debian's nginx in the foreground with its own prefix, pid file and logs in `base`,
    serving the shipped site config (site_config)."""

    def __init__(self, base: Path, upstream: int, port: int | None = None):
        self.base = base
        self.port = port or free_port()
        self.http_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        base.mkdir(parents=True, exist_ok=True)
        (base / "reactions.conf").write_text(site_config(self.port, self.http_port, upstream))
        temp = " ".join(
            f"{kind}_temp_path {base / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        # As root nginx would hand its workers to "nobody", who cannot enter the test's
        # temporary directories.
        user = "user root;" if os.geteuid() == 0 else ""
        (base / "nginx.conf").write_text(
            f"{user}\nworker_processes 1;\npid {base / 'nginx.pid'};\n"
            f"error_log {base / 'error.log'} warn;\n"
            "events { worker_connections 256; }\n"
            "http {\n"
            "    include /etc/nginx/mime.types;\n"
            "    default_type application/octet-stream;\n"
            f"    access_log {base / 'access.log'};\n"
            f"    {temp}\n"
            f"    include {base / 'reactions.conf'};\n"
            "}\n"
        )

    def start(self):
        command = [nginx_path(), "-p", str(self.base), "-e", str(self.base / "error.log")]
        command += ["-c", str(self.base / "nginx.conf")]
        checked = subprocess.run([*command, "-t"], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr
        self.process = subprocess.Popen([*command, "-g", "daemon off;"])
        wait_until(self.ready, timeout=10)
        return self

    def ready(self) -> bool:
        assert self.process.poll() is None, (self.base / "error.log").read_text()
        try:
            return fetch(f"{self.url}/readyz")[0] == 200
        except OSError:
            return False

    def stop(self):
        self.process.send_signal(signal.SIGQUIT)  # graceful: open requests end first
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def fetch(url, body=None, headers=None, source="127.0.0.1", origin=None):
    """(status, headers, body) of a GET, or of a POST of `body` as a browser's page at `origin`
    sends it, from the local address `source` (127.0.0.2, .3 … are other clients)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(
        parts.hostname, parts.port, timeout=10, source_address=(source, 0)
    )
    headers = {"User-Agent": BROWSER_UA} | (headers or {})
    if body is not None:
        headers |= {"Content-Type": "application/json", "Origin": origin}
    try:
        connection.request(
            "POST" if body is not None else "GET",
            f"{parts.path}?{parts.query}" if parts.query else parts.path,
            body=json.dumps(body) if body is not None else None,
            headers=headers,
        )
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def vote(nginx: Nginx, reader: str, article: str, source="127.0.0.1", origin=None, headers=None):
    body = {"site": "demo", "article": article, "reader": reader, "reaction": "happy"}
    return fetch(f"{nginx.url}/api/v1/reactions", body, headers, source, origin or nginx.url)


def happy_count(nginx: Nginx, article: str) -> int:
    status, _, body = fetch(f"{nginx.url}/api/v1/reactions?site=demo&article={article}")
    assert status == 200, body
    return {r["id"]: r["count"] for r in json.loads(body)["reactions"]}["happy"]


@contextlib.contextmanager
def deployed(tmp_path_factory, name: str, trusted_proxies: int) -> Iterator[Nginx]:
    """`reactions serve` with the settings of deploy/reactions.service's environment file,
    and nginx in front of it at its public URL; yields the nginx."""
    nginx_path()  # skips before anything starts
    port = free_port()
    limits = NO_LIMITS | {"REACTIONS_ADDRESS_RATE_PER_MINUTE": ADDRESS_BUDGET}
    server = Server(
        tmp_path_factory.mktemp(f"{name}-data"),
        REACTIONS_PUBLIC_URL=f"http://127.0.0.1:{port}",
        REACTIONS_TRUSTED_PROXIES=str(trusted_proxies),
        **{key: str(value) for key, value in limits.items()},
    ).start()
    try:
        nginx = Nginx(tmp_path_factory.mktemp(f"{name}-nginx"), server.port, port).start()
        try:
            yield nginx
        finally:
            nginx.stop()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def trusting(tmp_path_factory):
    """The recipe as shipped: REACTIONS_TRUSTED_PROXIES=1."""
    with deployed(tmp_path_factory, "trusting", 1) as nginx:
        yield nginx


@pytest.fixture(scope="module")
def untrusting(tmp_path_factory):
    """The same, with REACTIONS_TRUSTED_PROXIES left at 0."""
    with deployed(tmp_path_factory, "untrusting", 0) as nginx:
        yield nginx


@pytest.mark.parametrize(
    "path, cache_control",
    [
        ("/embed.js", f"public, max-age={FIVE_MINUTES}"),
        (f"/embed.{embed_script()[1]}.js", f"public, max-age={ONE_YEAR}, immutable"),
    ],
)
def test_the_embed_script_through_nginx_is_cached_as_documented(trusting, path, cache_control):
    # A browser asks for it compressed, keeps it, and later asks whether it changed.
    gzip = {"Accept-Encoding": "gzip"}
    status, headers, body = fetch(trusting.url + path, headers=gzip)
    assert status == 200
    assert headers["Cache-Control"] == cache_control
    assert headers["Content-Encoding"] == "gzip"
    assert len(body) < len(embed_script()[0])

    status, again, body = fetch(
        trusting.url + path, headers=gzip | {"If-None-Match": headers["ETag"]}
    )
    assert status == 304, body
    assert again["Cache-Control"] == cache_control
    assert body == b""


def test_plain_http_sends_the_reader_to_https(trusting):
    status, headers, _ = fetch(f"http://127.0.0.1:{trusting.http_port}/embed.js?v=1")

    assert status == 301
    assert headers["Location"] == "https://127.0.0.1/embed.js?v=1"


@pytest.mark.parametrize("allowed", [True, False], ids=["own-origin", "other-origin"])
def test_a_vote_through_nginx_counts_from_the_public_url_only(trusting, allowed):
    article = f"through-nginx-{allowed}"
    origin = trusting.url if allowed else "https://elsewhere.example"

    status, headers, body = vote(trusting, "reader-nginx-zzzzzzzzzzzz", article, origin=origin)

    assert status == (200 if allowed else 403), body
    assert happy_count(trusting, article) == (1 if allowed else 0)
    if allowed:
        assert headers["Access-Control-Allow-Origin"] == trusting.url


@pytest.mark.parametrize(
    "deployment, then",
    [
        # Another reader's address has a budget of its own. A forged X-Forwarded-For gains
        # the spent address nothing: nginx adds the address it saw after it, the one trusted.
        ("trusting", [("127.0.0.3", {}, 200), ("127.0.0.2", {"X-Forwarded-For": "10.9.8.7"}, 429)]),
        # Without trusted proxies every reader is nginx's 127.0.0.1: one budget for all.
        ("untrusting", [("127.0.0.3", {}, 429)]),
    ],
)
def test_rate_limits_see_the_readers_address_only_with_trusted_proxies(request, deployment, then):
    nginx = request.getfixturevalue(deployment)
    article = f"rate-{deployment}"
    # A reader at 127.0.0.2 votes as different readers until refused. Counted per minute, so
    # a new minute may begin on the way: then a few more votes.
    statuses = []
    while 429 not in statuses and len(statuses) < 2 * ADDRESS_BUDGET + 2:
        reader = f"reader-{len(statuses):03d}-zzzzzzzzzzzz"
        statuses.append(vote(nginx, reader, article, source="127.0.0.2")[0])
    assert statuses[-1] == 429 and statuses.count(200) >= ADDRESS_BUDGET, statuses

    answers = [
        vote(nginx, f"reader-later-{n}-zzzzzzzzzz", article, source=source, headers=headers)[0]
        for n, (source, headers, _) in enumerate(then)
    ]

    assert answers == [status for *_, status in then]


def test_a_live_stream_through_nginx_delivers_a_vote_at_once(trusting):
    article = "live-through-nginx"
    parts = urlsplit(trusting.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.request(
        "GET",
        f"/api/v1/stream?site=demo&article={article}",
        # As a browser's EventSource asks: compressed, were it allowed.
        headers={
            "Accept": "text/event-stream",
            "Accept-Encoding": "gzip, deflate, br",
            "User-Agent": BROWSER_UA,
        },
    )
    stream = connection.getresponse()
    assert stream.status == 200
    assert stream.headers["Content-Type"].startswith("text/event-stream")

    def next_counts() -> int:
        while not (line := stream.readline().decode()).startswith("data: "):
            pass
        return {r["id"]: r["count"] for r in json.loads(line[6:])["reactions"]}["happy"]

    try:
        assert next_counts() == 0  # the counts when the stream opens
        # The event must come long before the next heartbeat (15 s) or the end of the
        # response would push a buffered one out.
        connection.sock.settimeout(1.0)
        started = time.monotonic()
        assert vote(trusting, "reader-live-zzzzzzzzzzzz", article)[0] == 200
        try:
            assert next_counts() == 1
        except TimeoutError:
            pytest.fail("the vote's event did not come through nginx within 1 s (buffered?)")
        delivered = time.monotonic() - started
    finally:
        connection.close()
    print(f"\nvote to its event through nginx: {delivered * 1000:.0f} ms")
    assert delivered < 1.0


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # systemd's keys are case-sensitive
    parser.read(DEPLOY / "reactions.service")
    return parser


def test_the_systemd_unit_runs_reactions_serve_as_a_confined_user():
    service = unit()["Service"]
    program, *arguments = shlex.split(service["ExecStart"])
    data_dir = service["Environment"].removeprefix("REACTIONS_DATA_DIR=")

    assert Path(program).name == "reactions" and arguments[0] == "serve"
    serve.make_context("serve", arguments[1:])  # options `reactions serve` accepts
    assert service["User"] not in ("", "root")
    assert service["Restart"] == "on-failure"
    assert service["KillSignal"] == "SIGTERM"
    assert service["EnvironmentFile"].startswith("/etc/")
    assert data_dir.startswith("/var/lib/") and data_dir in service["ReadWritePaths"].split()
    assert service["ProtectSystem"] == "strict"
    assert service["NoNewPrivileges"] == service["PrivateTmp"] == "yes"


def test_systemd_reads_the_unit_without_a_complaint(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze is not installed; the unit's keys are checked above")
    # Only the program's path changes: systemd checks that it exists.
    text = (DEPLOY / "reactions.service").read_text()
    program = shlex.split(unit()["Service"]["ExecStart"])[0]
    installed = Path(sys.executable).parent / "reactions"
    (tmp_path / "reactions.service").write_text(text.replace(program, str(installed)))

    checked = subprocess.run(
        [analyze, "verify", str(tmp_path / "reactions.service")], capture_output=True, text=True
    )

    assert checked.returncode == 0 and checked.stderr == "", checked.stderr
