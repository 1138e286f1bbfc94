"""Generated requests from the OpenAPI document (schemathesis + hypothesis) against a real
Redis, with every check schemathesis has: no 500, no undocumented status, no response that
breaks its schema, every schema-valid request accepted and every schema-violating one
refused, so that the document describes what the server does."""

from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig

from tests.servers import BROWSER_UA, NO_LIMITS, PATIENT_REDIS, SECRET
from widget import create_app
from widget.reactions import MAX_ARTICLE_LENGTH, MAX_BATCH_ARTICLES, THUMBS_REACTIONS
from widget.store import NamedSet, Site

# (path, method, examples): up to 5,300 requests in all. A batch case costs about twice a
# vote's to generate (up to 50 items), so fewer of them for the same time.
OPERATIONS = [
    ("/api/v1/reactions", "POST", 2200),
    ("/api/v1/reactions", "GET", 1700),
    ("/api/v1/reactions/batch", "GET", 900),
    ("/api/v1/reactions.svg", "GET", 300),
    ("/healthz", "GET", 100),
    ("/readyz", "GET", 100),
]
# All checks run (`--checks all`), with one status added to what each of two expects: 413.
# The body cap counts bytes (a character may take 6 as a JSON escape), which a schema of
# characters cannot state: a schema-valid vote may be too large, and a too large body is
# refused before its fields are read.
CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "3xx", "401", "403", "404", "409", "413", "429"]
            },
            "negative_data_rejection": {
                "expected-statuses": [
                    "400",
                    "401",
                    "403",
                    "404",
                    "405",
                    "406",
                    "409",
                    "413",
                    "415",
                    "422",
                    "428",
                    "429",
                ]
            },
        }
    }
)
# A reaction is valid when the site offers it, which no static schema can know: generated
# cases that claim to be valid take one of the registered sites' reactions (or null).
REACTIONS = ["happy", "sad", "angry", None]
# Likewise a reaction set: the registered sites have `thumbs`; its reactions stand in for these.
THUMBS = NamedSet("thumbs", THUMBS_REACTIONS, "count")
IN_THUMBS = {"happy": "like", "sad": "dislike", "angry": "like", None: None}
sent = {"requests": 0}
statuses: Counter = Counter()


@pytest.fixture(scope="module")
def schema(redis_server):
    app = create_app(
        {"REDIS_URL": redis_server.url, "REACTIONS_SECRET_KEY": SECRET} | NO_LIMITS | PATIENT_REDIS
    )
    store = app.extensions["reactions"]
    # Short site names are what the generator tries most: register some, so that generated
    # votes get past the site check and exercise validation and the vote script.
    for name in ("0", "a", "00", "demo"):
        store.save_site(Site(name, ("http://localhost",), sets=(THUMBS,)))
    return schemathesis.openapi.from_wsgi("/openapi.json", app, config=CONFIG)


@pytest.mark.parametrize(("path", "method", "examples"), OPERATIONS)
def test_generated_requests_get_documented_answers(schema, redis_client, path, method, examples):
    operation = schema[path][method]
    strategy = st.one_of(
        st.tuples(
            operation.as_strategy(GenerationMode.POSITIVE), st.none(), st.sampled_from(REACTIONS)
        ).map(steer),
        operation.as_strategy(GenerationMode.NEGATIVE),
        # Schema-valid cases steered to a registered site, so that many requests get through
        # to the vote script instead of stopping at the site check.
        st.tuples(
            operation.as_strategy(GenerationMode.POSITIVE),
            st.sampled_from(["demo", "a"]),
            st.sampled_from(REACTIONS),
        ).map(steer),
    )

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def check(case):
        sent["requests"] += 1
        response = case.call_and_validate(
            headers={"Origin": "http://localhost", "User-Agent": BROWSER_UA}
        )
        statuses[method, response.status_code] += 1

    check()


def steer(generated):
    case, site, reaction = generated
    if isinstance(case.body, dict):
        case.body["reaction"] = reaction
        if site:
            case.body["site"] = site
        if case.body.get("set"):
            case.body["set"] = THUMBS.name
            case.body["reaction"] = IN_THUMBS[reaction]
    query = case.query if isinstance(case.query, dict) else {}
    if site and "site" in query:
        query["site"] = site
    if query.get("set"):
        query["set"] = THUMBS.name
    if "set_article" in query:
        # A set the sites have, an article id within its length, and at most a batch in all
        # (what the operation's description says and its schema cannot).
        articles = query["set_article"]
        articles = articles if isinstance(articles, list) else [articles]
        room = MAX_BATCH_ARTICLES - len(query.get("article") or [])
        query["set_article"] = [
            f"{THUMBS.name}:{a.partition(':')[2][:MAX_ARTICLE_LENGTH]}" for a in articles[:room]
        ] or None
        if query["set_article"] is None:
            del query["set_article"]
    if case.path.endswith("/batch") and not (query.get("article") or query.get("set_article")):
        query["article"] = ["first-post"]  # one item at least, of either parameter
    return case


def test_at_least_5000_requests_were_fuzzed():
    if sent["requests"] == 0:
        pytest.skip("run together with the fuzz tests")
    print(f"\nfuzzed {sent['requests']} requests: {dict(statuses)}")
    assert sent["requests"] >= 5000, sent
    # The generated votes reached the vote script, not only the validation in front of it.
    assert statuses["POST", 200] > 50 and statuses["POST", 400] > 50, statuses
