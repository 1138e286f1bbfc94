"""Generated requests from the OpenAPI document (schemathesis + hypothesis) against a real
Redis: no 500, no undocumented status, no response that breaks its schema."""

from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import BROWSER_UA, NO_LIMITS, SECRET
from widget import create_app
from widget.store import Site

# (path, method, examples): up to 5,400 requests in all.
OPERATIONS = [
    ("/api/v1/reactions", "POST", 2300),
    ("/api/v1/reactions", "GET", 1500),
    ("/api/v1/reactions/batch", "GET", 1400),
    ("/healthz", "GET", 100),
    ("/readyz", "GET", 100),
]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
sent = {"requests": 0}
statuses: Counter = Counter()


@pytest.fixture(scope="module")
def schema(redis_server):
    app = create_app({"REDIS_URL": redis_server.url, "REACTIONS_SECRET_KEY": SECRET} | NO_LIMITS)
    store = app.extensions["reactions"]
    # Short site names are what the generator tries most: register some, so that generated
    # votes get past the site check and exercise validation and the vote script.
    for name in ("0", "a", "00", "demo"):
        store.save_site(Site(name, ("http://localhost",)))
    return schemathesis.openapi.from_wsgi("/openapi.json", app)


@pytest.mark.parametrize(("path", "method", "examples"), OPERATIONS)
def test_generated_requests_get_documented_answers(schema, redis_client, path, method, examples):
    operation = schema[path][method]
    strategy = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
        # Schema-valid cases steered to a registered site and a real reaction, so that many
        # requests get through to the vote script instead of stopping at the site check.
        st.tuples(
            operation.as_strategy(GenerationMode.POSITIVE),
            st.sampled_from(["demo", "a"]),
            st.sampled_from(["happy", "sad", "angry", None]),
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
            headers={"Origin": "http://localhost", "User-Agent": BROWSER_UA}, checks=CHECKS
        )
        statuses[method, response.status_code] += 1

    check()


def steer(generated):
    case, site, reaction = generated
    if isinstance(case.body, dict):
        case.body["site"] = site
        case.body["reaction"] = reaction
    if isinstance(case.query, dict) and "site" in case.query:
        case.query["site"] = site
    return case


def test_at_least_5000_requests_were_fuzzed():
    if sent["requests"] == 0:
        pytest.skip("run together with the fuzz tests")
    print(f"\nfuzzed {sent['requests']} requests: {dict(statuses)}")
    assert sent["requests"] >= 5000, sent
    # The generated votes reached the vote script, not only the validation in front of it.
    assert statuses["POST", 200] > 50 and statuses["POST", 400] > 50, statuses
