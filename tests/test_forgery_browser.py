"""A page on another origin tries to vote from a reader's browser: nothing is counted."""

import re
import threading

from werkzeug.serving import make_server
from werkzeug.wrappers import Response

from tests.servers import wait_until

ATTACK = """<!doctype html><title>attack</title>
<form id="f" method="post" action="{api}" enctype="text/plain" target="sink">
  <input name='{{"site":"demo","article":"target","reader":"forged-reader-aaaaaaa","reaction":"angry","x":"' value='"}}'>
</form>
<iframe name="sink"></iframe>
<script>
const body = JSON.stringify({{site: "demo", article: "target", reader: "forged-reader-bbbbbbb", reaction: "angry"}});
window.results = Promise.allSettled([
  fetch("{api}", {{method: "POST", mode: "no-cors", headers: {{"Content-Type": "text/plain"}}, body}}),
  fetch("{api}", {{method: "POST", mode: "cors", headers: {{"Content-Type": "application/json"}}, body}})
    .then(r => r.status),
]).then(r => r.map(x => x.status));
document.getElementById("f").submit();
</script>"""


def posts_answered(caplog):
    pattern = re.compile(r'POST /api/v1/reactions HTTP/1\.1\S*" (\d{3})')
    return sorted(int(m.group(1)) for line in caplog.messages if (m := pattern.search(line)))


def test_another_origin_cannot_vote(page, live_server, client, caplog):
    caplog.set_level("INFO", logger="werkzeug")
    api = f"{live_server.url}/api/v1/reactions"
    attacker = make_server(
        "127.0.0.1",
        0,
        lambda environ, start: Response(ATTACK.format(api=api), mimetype="text/html")(
            environ, start
        ),
    )
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    try:
        with page.expect_response(
            lambda r: r.request.method == "POST" and r.url == api and r.request.frame.name == "sink"
        ):
            page.goto(f"http://127.0.0.1:{attacker.server_port}/")
        outcomes = page.evaluate("() => window.results")
    finally:
        attacker.shutdown()
    assert len(outcomes) == 2
    # All three requests reached the server and were refused: two as not JSON, one by origin.
    # The server's log may trail the browser by a moment: poll for it.
    wait_until(lambda: len(posts_answered(caplog)) >= 3)
    assert posts_answered(caplog) == [403, 415, 415]
    body = client.get("/api/v1/reactions?site=demo&article=target").get_json()
    assert body["total"] == 0
