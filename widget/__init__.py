"""reactions: a self-hosted emoji-reaction bar, counted in Redis."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from . import config, logs
from .embedded_redis import socket_url
from .store import Limits, Store, connect

__version__ = "0.1.0"


def resource_dir(name: str) -> str:
    """`static/` or `templates/`: inside the installed wheel, else at the project's top level."""
    here = Path(__file__).resolve().parent
    packaged = here / name
    return str(packaged if packaged.is_dir() else here.parent / name)


def create_app(test_config: dict | None = None) -> Flask:
    """The app factory. Nothing connects to Redis here; the pool connects on first use.

    Without `REDIS_URL` the app talks to the embedded Redis of `REACTIONS_DATA_DIR`, which
    `reactions serve` starts.
    """
    settings = config.load(overrides=test_config)
    logs.setup(settings["REACTIONS_LOG_FORMAT"])
    app = Flask(
        __name__,
        static_folder=resource_dir("static"),
        template_folder=resource_dir("templates"),
    )
    app.config.update(settings)
    app.config["MAX_CONTENT_LENGTH"] = settings["REACTIONS_MAX_BODY_BYTES"]
    app.json.ensure_ascii = False
    app.json.sort_keys = False

    url = settings["REDIS_URL"] or socket_url(settings["REACTIONS_DATA_DIR"])
    client = connect(url, settings["REACTIONS_REDIS_TIMEOUT"])
    limits = Limits(
        per_client_minute=settings["REACTIONS_RATE_PER_MINUTE"],
        per_site_second=settings["REACTIONS_SITE_RATE_PER_SECOND"],
        new_articles_hour=settings["REACTIONS_NEW_ARTICLES_PER_HOUR"],
        per_address_minute=settings["REACTIONS_ADDRESS_RATE_PER_MINUTE"],
        own_data_per_minute=settings["REACTIONS_OWN_DATA_RATE_PER_MINUTE"],
    )
    app.extensions["reactions"] = Store(
        client,
        secret=settings["REACTIONS_SECRET_KEY"],
        limits=limits,
        # A Sentinel group has a replica to promote: a vote is answered once it has it.
        replica_acks=1 if url.split("://", 1)[0].endswith("+sentinel") else 0,
        # Half the call's time: with no replica answering, the vote is still answered in time.
        replica_wait_ms=int(settings["REACTIONS_REDIS_TIMEOUT"] * 500),
    )

    if settings["REACTIONS_TRUSTED_PROXIES"]:
        # Trust X-Forwarded-For/-Proto from exactly that many proxies in front of us.
        n = settings["REACTIONS_TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)

    # admin_export and admin_sets add their routes to the admin blueprint, before it is
    # registered.
    from . import admin, admin_export, admin_sets, api, embed, errors, live, metrics  # noqa: F401

    hub = live.Hub(
        app.extensions["reactions"],
        per_client=settings["REACTIONS_STREAMS_PER_CLIENT"],
        per_process=settings["REACTIONS_STREAMS_PER_PROCESS"],
        writes_per_second=settings["REACTIONS_LIVE_WRITES_PER_SECOND"],
    )
    app.extensions["reactions_live"] = hub
    app.extensions["reactions"].on_change.append(hub.remember)
    errors.register(app)
    admin.setup(app)
    app.register_blueprint(admin.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(api.health)
    app.register_blueprint(live.bp)
    app.register_blueprint(embed.bp)
    metrics.setup(app)
    return app
