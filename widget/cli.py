"""The `reactions` command: run the server, manage the admin login; the sites and data commands
(`cli_sites`, `cli_data`) join it here."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from urllib.parse import urlsplit

import click
import redis

from . import __version__, logs
from .cli_common import open_store, settings
from .cli_data import backup_command, export_command, import_group, restore_command
from .cli_sites import sites
from .embedded_redis import (
    EmbeddedRedis,
    EmbeddedRedisError,
)
from .security import hash_password
from .serving import start_gunicorn, supervise, wait_until_up
from .store import Store, connect

# What a terminal (Ctrl-C, closing it), systemd, Docker or a process manager sends to stop.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
STOPPING = "Stopping: open requests and live streams have 5 s to finish (Ctrl-C again: at once).\n"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="reactions")
def main() -> None:
    """reactions: a self-hosted emoji-reaction bar counted in Redis.

    Settings come from the environment: REDIS_URL (unset: an embedded Redis in
    REACTIONS_DATA_DIR, default ./var), REACTIONS_PUBLIC_URL, REACTIONS_SECRET_KEY,
    REACTIONS_ADMIN_PASSWORD, REACTIONS_APPENDFSYNC, REACTIONS_REDIS_PRIORITY.
    """


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--workers", default=2, show_default=True, type=click.IntRange(1, 64), help="Processes."
)
@click.option(
    "--worker-class", type=click.Choice(["gevent", "gthread"]), default="gevent",
    show_default=True,
    help="gevent holds thousands of idle live streams per process; gthread needs a thread each.",
)  # fmt: skip
@click.option(
    "--connections", default=2000, show_default=True, type=click.IntRange(10, 100_000),
    help="Open connections (live streams included) per gevent worker.",
)  # fmt: skip
@click.option(
    "--threads", default=16, show_default=True, type=click.IntRange(1, 1000),
    help="Threads per worker process (gthread only).",
)  # fmt: skip
def serve(
    host: str, port: int, workers: int, worker_class: str, connections: int, threads: int
) -> None:
    """Run the server under gunicorn.

    Without REDIS_URL it first starts the embedded Redis (AOF persistence in
    REACTIONS_DATA_DIR), restarts it should it die, and exits with status 1 when it cannot
    (for the process manager to restart the server). Ctrl-C, SIGINT, SIGTERM or SIGHUP
    stop gunicorn gracefully (open requests finish, 5 s at most; a second signal stops it at
    once), then the embedded Redis, and exit 0.
    """
    conf = settings()
    env = dict(os.environ)
    stopping: list[int] = []
    server: subprocess.Popen | None = None

    def stop(signum, _frame):
        stopping.append(signum)
        if server is None or server.poll() is not None:
            return
        if len(stopping) == 1:
            server.send_signal(signal.SIGTERM)
            # os.write: a print here could interrupt a print of the main thread's
            os.write(sys.stderr.fileno(), STOPPING.encode())
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)

    previous = {
        signum: signal.signal(signum, stop)
        for signum in STOP_SIGNALS
        # under nohup, closing the terminal must not stop the server
        if not (signum == signal.SIGHUP and signal.getsignal(signum) == signal.SIG_IGN)
    }
    embedded = None
    returncode = 0
    redis_kind = "embedded" if not conf["REDIS_URL"] else urlsplit(conf["REDIS_URL"]).scheme
    try:
        if not conf["REDIS_URL"]:
            embedded = EmbeddedRedis(
                conf["REACTIONS_DATA_DIR"],
                conf["REACTIONS_APPENDFSYNC"],
                priority=conf["REACTIONS_REDIS_PRIORITY"],
            )
            try:
                embedded.start()
            except EmbeddedRedisError as error:
                raise click.ClickException(str(error)) from None
            env["REDIS_URL"] = embedded.url
            click.echo(f"Embedded Redis: data in {embedded.data_dir}, {embedded.priority_note}")
        password = admin_password_note(conf, env["REDIS_URL"])
        if not stopping:
            server = start_gunicorn(host, port, workers, worker_class, connections, threads, env)
            if stopping:  # a signal came while gunicorn started
                server.send_signal(signal.SIGTERM)
            shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
            base = f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"
            if wait_until_up(f"{base}/healthz", server):
                logs.event(
                    "server.start", f"serving {base}", port=port, workers=workers, redis=redis_kind
                )
                click.echo(f"Demo page: {base}/demo")
                click.echo(f"Admin: {base}/admin/ ({password})")
                click.echo(public_url_note(conf["REACTIONS_PUBLIC_URL"]))
            returncode = supervise(server, embedded, stopping)
    finally:
        if server is not None and server.poll() is None:
            server.terminate()
            server.wait()
        if embedded:
            embedded.stop()
            click.echo("Embedded Redis stopped.")
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if server is not None:
            stopped_by = signal.Signals(stopping[0]).name if stopping else None
            logs.event("server.stop", "server stopped", status=returncode, signal=stopped_by)
    if returncode and not stopping:
        sys.exit(returncode)


def admin_password_note(conf: dict, url: str) -> str:
    """Where the admin password comes from, or how to set one, for `serve` to print."""
    if conf["REACTIONS_ADMIN_PASSWORD"]:
        return "password from REACTIONS_ADMIN_PASSWORD"
    try:
        stored = Store(connect(url, conf["REACTIONS_REDIS_TIMEOUT"] * 4)).admin_password_hash()
    except redis.RedisError as error:
        return f"could not read the stored admin password: {error}"
    if stored:
        return "password set with 'reactions admin set-password'"
    return (
        "no admin password yet: run 'reactions admin set-password' or set "
        "REACTIONS_ADMIN_PASSWORD, then log in"
    )


def public_url_note(public_url: str) -> str:
    if public_url:
        return f"Embed snippets load {public_url}/embed.js (REACTIONS_PUBLIC_URL)."
    return (
        "REACTIONS_PUBLIC_URL is not set: the admin's embed snippets use the address its "
        "page is opened at."
    )


@main.group()
def admin() -> None:
    """Manage the admin login."""


@admin.command("set-password")
@click.password_option(help="The new admin password (asked twice when not given).")
def admin_set_password(password: str) -> None:
    """Store a salted hash of the admin password in Redis.

    REACTIONS_ADMIN_PASSWORD, when set, takes precedence over the stored hash. Every open
    admin login ends: log in again with the new password.
    """
    if len(password) < 10:
        raise click.BadParameter("use at least 10 characters", param_hint="password")
    with open_store() as store:
        store.set_admin_password_hash(hash_password(password))
    public_url = settings()["REACTIONS_PUBLIC_URL"]
    click.echo(f"Admin password saved; open logins ended. Log in at {public_url}/admin/.")


@admin.command("unlock")
def admin_unlock() -> None:
    """Lift the login lock-out now, for every address.

    Failed logins lock an address out for 15 minutes, and every address once too many fail
    together (REACTIONS_LOGIN_FAILURES_GLOBAL); a login from the server's own machine is
    never held by the latter.
    """
    with open_store() as store:
        removed = store.unlock_admin_login()
    click.echo(f"Login unlocked ({removed} failure counter{'s' if removed != 1 else ''} removed).")


main.add_command(sites)
for command in (export_command, import_group, backup_command, restore_command):
    main.add_command(command)


if __name__ == "__main__":
    main()
