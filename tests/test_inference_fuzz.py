"""Schemathesis fuzzes every operation of /openapi.json against the app: never a 5xx.

Hypothesis drives each operation's schemathesis strategy directly (positive and negative
examples, bounded), one pytest case per operation.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from inference_support import built_models, make_app, register
from smartcache.inference.openapi import build

SITE = "T2_IT_Pisa"
OPERATIONS = sorted((path, method.upper()) for path, ops in build()["paths"].items() for method in ops)
MAX_EXAMPLES = 20


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory):
    built = built_models()
    app, store = make_app(tmp_path_factory.mktemp("fuzz"))   # no token: mutating routes get fuzzed too
    register(store, built, "v1", feature_defaults={"n_access_7d": 0.0})
    register(store, built, "v1", name="other")
    store.add_site(SITE, 10**12)
    yield schemathesis.openapi.from_wsgi("/openapi.json", app)
    store.close()


@pytest.mark.parametrize("path,method", OPERATIONS)
def test_no_server_errors(api_schema, path, method):
    operation = api_schema[path][method]
    strategy = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(GenerationMode.NEGATIVE)
    seen = []

    @given(case=strategy)
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def run(case):
        response = case.call()
        seen.append(response.status_code)
        where = f"{method} {path} {case.path_parameters} {case.query} {str(case.body)[:200]!r}"
        assert response.status_code < 500, f"{where}: {response.status_code} {response.text[:300]}"
        if response.status_code >= 400:
            assert "error" in response.json(), f"{where}: {response.text[:300]}"

    run()
    assert seen, "no example was generated"
