"""Scale-out: a real 3-master Redis Cluster, and two app servers sharing one Redis."""

import json
import subprocess
import threading
import urllib.request

import pytest
import redis

from tests.servers import BROWSER_UA, NO_LIMITS, SECRET, LiveServer, Server, wait_until
from widget import create_app
from widget.store import Site


@pytest.fixture
def redis_url(redis_cluster):
    return redis_cluster.url


def post(client, site, article, reader, reaction, origin):
    return client.post(
        "/api/v1/reactions",
        json={"site": site, "article": article, "reader": reader, "reaction": reaction},
        headers={"Origin": origin},
    )


def test_sites_on_different_shards_count_independently(redis_cluster, app, client, store):
    shards = redis_cluster.site_per_master("site")
    assert len(set(shards.values())) == 3
    for port, name in shards.items():
        origin = f"https://{name}.example"
        store.save_site(Site(name, (origin,)))
        for number in range(3):
            assert (
                post(
                    client, name, "post", f"reader-{number}-aaaaaaaaaaaa", "happy", origin
                ).status_code
                == 200
            )
        moved = post(client, name, "post", "reader-0-aaaaaaaaaaaa", "sad", origin).get_json()
        assert moved["total"] == 3 and moved["reactions"][0]["count"] == 2
        # Every key of the site sits on the master that owns the site's hash slot.
        node = redis.Redis(port=port, decode_responses=True)
        assert node.hgetall(f"rx:{{{name}}}:a:post") == {"happy": "2", "sad": "1"}
        store.fold(name)  # the statistics take votes in batches
        assert node.zscore(f"rx:{{{name}}}:index", "post") == 3
    batch = client.get(
        f"/api/v1/reactions/batch?site={shards[redis_cluster.ports[1]]}&article=post&article=none"
    )
    assert batch.get_json()["articles"]["post"]["total"] == 3


def test_admin_pages_and_export_work_on_a_cluster(redis_cluster, redis_client):
    app = create_app(
        {
            "REDIS_URL": redis_cluster.url,
            "REACTIONS_SECRET_KEY": SECRET,
            "REACTIONS_ADMIN_PASSWORD": "cluster password",
            "REACTIONS_LOGIN_DELAY": 0,
        }
        | NO_LIMITS
    )
    store = app.extensions["reactions"]
    demo = store.get_site("demo")
    for number in range(5):
        store.set_reaction(demo, f"post-{number}", f"r{number}", "happy", title=f"Post {number}")
    client = app.test_client()
    page = client.get("/admin/login").get_data(as_text=True)
    csrf = page.split('name="csrf_token" value="')[1].split('"')[0]
    assert (
        client.post(
            "/admin/login", data={"password": "cluster password", "csrf_token": csrf}
        ).status_code
        == 302
    )
    for path in (
        "/admin/",
        "/admin/sites/demo",
        "/admin/sites/demo?q=post",
        "/admin/sites/demo/article?id=post-1",
    ):
        assert client.get(path).status_code == 200, path
    rows = client.get("/admin/sites/demo/export.csv").get_data(as_text=True).splitlines()
    assert len(rows) == 6


def read_event(response):
    lines = []
    while True:
        line = response.readline().decode()
        if line == "\n":
            if any(part.startswith("data:") for part in lines):
                return json.loads(next(p for p in lines if p.startswith("data:"))[5:])
            lines = []
            continue
        lines.append(line.rstrip("\n"))


def test_live_stream_on_a_cluster(app, store):
    with LiveServer(app) as server:
        stream = urllib.request.urlopen(
            f"{server.url}/api/v1/stream?site=demo&article=live", timeout=10
        )
        assert read_event(stream)["total"] == 0
        store.set_reaction(store.get_site("demo"), "live", "reader-live", "excited")
        event = read_event(stream)
        assert event["total"] == 1 and event["reactions"][2]["count"] == 1
        stream.close()


def test_a_reaction_on_one_app_server_reaches_a_stream_on_another(tmp_path, redis_server):
    # This module's redis_client flushes the cluster; these servers share the embedded Redis,
    # where earlier tests' votes from this address and browser would count against its
    # per-minute limit.
    with redis.Redis.from_url(redis_server.url) as shared:
        shared.flushall()
    first = Server(tmp_path / "a", REDIS_URL=redis_server.url).start()
    second = Server(tmp_path / "b", REDIS_URL=redis_server.url).start()
    try:
        stream = urllib.request.urlopen(
            f"{second.url}/api/v1/stream?site=demo&article=shared", timeout=10
        )
        assert read_event(stream)["total"] == 0
        received = []
        reader = threading.Thread(target=lambda: received.append(read_event(stream)), daemon=True)
        reader.start()
        request = urllib.request.Request(
            f"{first.url}/api/v1/reactions",
            data=json.dumps(
                {
                    "site": "demo",
                    "article": "shared",
                    "reader": "reader-two-servers",
                    "reaction": "sleepy",
                }
            ).encode(),
            headers={
                "Content-Type": "application/json",
                "Origin": first.url,
                "User-Agent": BROWSER_UA,
            },
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200
        wait_until(lambda: received, timeout=5)
        assert received[0]["total"] == 1 and received[0]["reactions"][3]["count"] == 1
        stream.close()
    finally:
        for server in (first, second):
            code, output = server.stop()
            assert code == 0, output


def test_a_sentinel_setup_finds_the_master(tmp_path):
    from tests.cluster import free_cluster_port
    from widget.embedded_redis import server_binary

    master_port, sentinel_port = free_cluster_port(), free_cluster_port()
    config = tmp_path / "sentinel.conf"
    config.write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor reactions 127.0.0.1 {master_port} 1\n"
    )
    common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)]
    master = subprocess.Popen(
        [server_binary(), "--port", str(master_port), *common, "--logfile", "master.log"]
    )
    sentinel = subprocess.Popen(
        [server_binary(), str(config), "--sentinel", "--logfile", "sentinel.log"]
    )
    try:
        sentinel_client = redis.Redis(port=sentinel_port, decode_responses=True)
        wait_until(
            lambda: (
                _answers(sentinel_client)
                and sentinel_client.sentinel_get_master_addr_by_name("reactions")
            )
        )
        app = create_app(
            {
                "REDIS_URL": f"redis+sentinel://127.0.0.1:{sentinel_port}/reactions",
                "REACTIONS_SECRET_KEY": SECRET,
            }
            | NO_LIMITS
        )
        client = app.test_client()
        client.environ_base["HTTP_USER_AGENT"] = BROWSER_UA
        assert client.get("/readyz").status_code == 200
        answer = post(
            client, "demo", "sentinel", "reader-sentinel-aaaa", "angry", "http://localhost"
        )
        assert answer.status_code == 200 and answer.get_json()["total"] == 1
        assert redis.Redis(port=master_port, decode_responses=True).hgetall(
            "rx:{demo}:a:sentinel"
        ) == {"angry": "1"}
    finally:
        for process in (sentinel, master):
            process.terminate()
            process.wait(10)


def _answers(client):
    try:
        return client.ping()
    except redis.ConnectionError:
        return False
