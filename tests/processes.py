"""`reactions serve` with several worker processes, for what every process must see at once:
a changed reaction set, an import, a reset."""

from __future__ import annotations

import contextlib
import json
import urllib.parse
import urllib.request
from collections.abc import Iterator

from tests.servers import NO_LIMITS, SECRET, Server


class ServerProcesses(Server):
    """`reactions serve --workers N` on the tests' Redis, without limits on votes."""

    def __init__(self, data_dir, redis_url: str, workers: int = 2, **env):
        limits = {name: str(value) for name, value in NO_LIMITS.items()}
        super().__init__(
            data_dir, workers, REDIS_URL=redis_url, REACTIONS_SECRET_KEY=SECRET, **limits, **env
        )

    def read(self, site: str, article: str) -> dict:
        """A counts GET on a new connection, as a reader's browser opening the page."""
        query = urllib.parse.urlencode({"site": site, "article": article})
        with urllib.request.urlopen(f"{self.url}/api/v1/reactions?{query}", timeout=5) as answer:
            return json.loads(answer.read())

    @contextlib.contextmanager
    def stream(self, site: str, article: str) -> Iterator[Iterator[dict]]:
        """An open live stream of the article: yields its `counts` events as they come."""
        query = urllib.parse.urlencode({"site": site, "article": article})
        with urllib.request.urlopen(f"{self.url}/api/v1/stream?{query}", timeout=10) as answer:

            def events() -> Iterator[dict]:
                data = None
                for raw in answer:
                    line = raw.decode().rstrip("\n")
                    if line.startswith("data: "):
                        data = line[len("data: ") :]
                    elif not line and data is not None:
                        yield json.loads(data)
                        data = None

            yield events()
