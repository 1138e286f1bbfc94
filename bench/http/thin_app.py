"""The thin reference for bench/http: the least a Flask + gunicorn + Redis endpoint can do.

POST /vote does one HINCRBY + HGETALL pipeline; GET /counts does one HGETALL. Same Redis,
same gunicorn worker settings as the product, so the ratio shows what the product's own
work costs.
"""

from __future__ import annotations

import os

import redis
from flask import Flask, jsonify

app = Flask(__name__)
client = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)


@app.post("/vote")
def vote():
    pipe = client.pipeline(transaction=False)
    pipe.hincrby("thin:counts", "happy", 1)
    pipe.hgetall("thin:counts")
    return jsonify(pipe.execute()[1])


@app.get("/counts")
def counts():
    return jsonify(client.hgetall("thin:counts"))
