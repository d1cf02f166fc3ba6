"""The inference service's TFaaS routes, errors, auth, model cache and version swap (in-process)."""

from __future__ import annotations

import io
import json
import threading

import numpy as np
import pytest

from inference_support import FEATURES, PROBES, TOKEN, built_models, make_app, register, service


@pytest.fixture(scope="session")
def built():
    return built_models()


@pytest.fixture(params=[True, False], ids=["fastpath", "flask"])
def app_store(request, tmp_path, built):
    app, store = make_app(tmp_path, fast_path=request.param)
    register(store, built, "v1", feature_defaults={"n_access_7d": 0.0})
    yield app, store
    store.close()


@pytest.fixture
def client(app_store):
    return app_store[0].test_client()


def expected(built, key, i=None):
    rows = built["models"][key]["expected"]
    return rows if i is None else rows[i]


def post_json(client, body, **kw):
    return client.post("/json", data=json.dumps(body), content_type="application/json", **kw)


# -- predictions --------------------------------------------------------------------------------
def test_json_single_row_matches_keras(client, built):
    for path in ("/json", "/predict/json"):
        r = client.post(path, data=json.dumps({"keys": FEATURES, "values": PROBES[0], "model": "cachemodel"}))
        assert r.status_code == 200, r.data
        assert r.mimetype == "application/json"
        np.testing.assert_allclose(r.get_json(), expected(built, "v1", 0), rtol=1e-5, atol=1e-6)


def test_json_batched_rows(client, built):
    r = post_json(client, {"values": PROBES, "model": "cachemodel"})
    assert r.status_code == 200
    out = r.get_json()
    assert len(out) == len(PROBES) and all(len(row) == 1 for row in out)
    np.testing.assert_allclose(out, expected(built, "v1"), rtol=1e-5, atol=1e-6)


def test_large_batch_is_chunked_and_padded(client, built):
    rows = [PROBES[i % 3] for i in range(1500)]    # > one 1024-row chunk, not a power of two
    out = post_json(client, {"values": rows, "model": "cachemodel"}).get_json()
    assert len(out) == 1500
    np.testing.assert_allclose(out[1499], expected(built, "v1", 1499 % 3), rtol=1e-5, atol=1e-6)


def test_keys_in_another_order_are_reordered(client, built):
    order = [3, 0, 2, 1]
    body = {"keys": [FEATURES[i] for i in order], "values": [PROBES[0][i] for i in order], "model": "cachemodel"}
    np.testing.assert_allclose(post_json(client, body).get_json(), expected(built, "v1", 0), rtol=1e-5)


BAD_BODIES = [
    ({"values": [1, 2], "model": "cachemodel"}, 400, "takes 4 values"),
    ({"values": ["1", 2, 3, 4], "model": "cachemodel"}, 400, "numbers"),
    ({"values": [True, 2, 3, 4], "model": "cachemodel"}, 400, "numbers"),
    ({"values": [None, 2, 3, 4], "model": "cachemodel"}, 400, "numbers"),
    ({"values": [1e39, 2, 3, 4], "model": "cachemodel"}, 400, "finite"),
    ({"values": [[1, 2, 3, 4], 5], "model": "cachemodel"}, 400, "all numbers"),
    ({"values": [[1, 2, 3, 4], [1, 2]], "model": "cachemodel"}, 400, "row 1"),
    ({"values": [], "model": "cachemodel"}, 400, "non-empty"),
    ({"values": {"a": 1}, "model": "cachemodel"}, 400, "non-empty"),
    ({"model": "cachemodel"}, 400, "non-empty"),
    ({"values": [1, 2, 3, 4], "model": "nosuch"}, 404, "no model"),
    ({"values": [1, 2, 3, 4], "model": "../etc/passwd"}, 400, "invalid model name"),
    ({"values": [1, 2, 3, 4], "model": 7}, 400, "string"),
    ({"values": [1, 2, 3, 4]}, 400, "no default model"),
    ({"values": [1, 2, 3, 4], "keys": ["a", "b", "c", "d"], "model": "cachemodel"}, 400, "keys do not match"),
    ({"values": [1, 2, 3, 4], "keys": FEATURES[:3], "model": "cachemodel"}, 400, "3 keys"),
    ([1, 2, 3, 4], 400, "JSON object"),
]


@pytest.mark.parametrize("body,status,message", BAD_BODIES)
def test_bad_json_requests_are_4xx_json(client, body, status, message):
    r = post_json(client, body)
    assert r.status_code == status, r.data
    assert message in r.get_json()["error"]


@pytest.mark.parametrize("raw", [b'{"values": [NaN, 1, 2, 3], "model": "cachemodel"}',
                                 b'{"values": [Infinity, 1, 2, 3], "model": "cachemodel"}',
                                 b'{"values": [1, 2', b"", b"\xff\xfe", b"[" * 100000])
def test_malformed_or_nan_json_is_400(client, raw):
    r = client.post("/json", data=raw)
    assert r.status_code == 400
    assert "error" in r.get_json()


def test_wrong_method_and_unknown_route_are_json(client):
    r = client.get("/json")
    assert r.status_code == 405 and "error" in r.get_json() and "POST" in r.headers["Allow"]
    r = client.get("/nosuch")
    assert r.status_code == 404 and "error" in r.get_json()


# -- models, params, delete ---------------------------------------------------------------------
def test_models_and_params_are_tfaas_shaped(client):
    models = client.get("/models").get_json()
    assert [m["name"] for m in models] == ["cachemodel"]
    m = models[0]
    for key in ("name", "model", "labels", "options", "inputNode", "outputNode", "description", "timestamp"):
        assert key in m
    assert m["version"] == 1 and m["input_features"] == FEATURES and m["inputNode"] == "features"
    assert client.get("/params/cachemodel").get_json()["name"] == "cachemodel"
    assert client.get("/params/nosuch").status_code == 404


def test_default_model_via_post_params(client, built):
    assert client.get("/params").get_json() == {}
    # the 2023 snake_case keys are accepted and mapped
    r = client.post("/params", json={"name": "cachemodel", "input_node": "features", "output_node": "output_0"})
    assert r.status_code == 200, r.data
    got = client.get("/params").get_json()
    assert got["name"] == "cachemodel" and got["inputNode"] == "features" and got["outputNode"] == "output_0"
    np.testing.assert_allclose(post_json(client, {"values": PROBES[1]}).get_json(), expected(built, "v1", 1),
                               rtol=1e-5)
    assert client.post("/params", json={"name": "nosuch"}).status_code == 404
    assert client.post("/params", json={"model": "x"}).status_code == 400
    assert client.post("/params", data=b"[1]").status_code == 400


def test_delete_by_path_and_by_form(app_store, built):
    app, store = app_store
    client = app.test_client()
    register(store, built, "v1", name="other")
    assert post_json(client, {"values": PROBES[0], "model": "other"}).status_code == 200
    r = client.delete("/delete/other")
    assert r.status_code == 200 and r.get_json() == {"deleted": "other", "versions": 1}
    assert post_json(client, {"values": PROBES[0], "model": "other"}).status_code == 404
    assert client.delete("/delete", data={"model": "cachemodel"}).status_code == 200
    assert client.get("/models").get_json() == []
    assert client.delete("/delete/cachemodel").status_code == 404
    assert client.delete("/delete").status_code == 400
    assert client.delete("/delete/bad%2Fname").status_code in (400, 404)


# -- auth ---------------------------------------------------------------------------------------
def test_mutating_routes_need_the_bearer_token(tmp_path, built):
    app, store = make_app(tmp_path, token=TOKEN)
    register(store, built, "v1")
    c = app.test_client()
    good, bad = {"Authorization": f"Bearer {TOKEN}"}, {"Authorization": "Bearer nope"}
    for headers in ({}, bad, {"Authorization": TOKEN}, {"Authorization": f"Bearer {TOKEN}x"},
                    {"Authorization": "Bearer \u00e9t\u00e9"}):
        r = c.post("/params", json={"name": "cachemodel"}, headers=headers)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
        assert c.delete("/delete/cachemodel", headers=headers).status_code == 401
        assert c.post("/upload", data=b"\x1f\x8bxx", headers=headers).status_code == 401
    assert c.post("/params", json={"name": "cachemodel"}, headers=good).status_code == 200
    # reads stay open
    assert c.get("/models").status_code == 200
    assert post_json(c, {"values": PROBES[0], "model": "cachemodel"}).status_code == 200
    assert c.get("/status").get_json()["auth"] == "bearer token"
    assert c.delete("/delete/cachemodel", headers=good).status_code == 200
    store.close()


@pytest.mark.parametrize("token,reason", [(None, "no inference token"), ("", "no inference token"),
                                          ("short", "shorter than 16"), ("has space in the token", "whitespace"),
                                          (12345, "not a string")])
def test_auth_fails_closed_without_a_usable_token(tmp_path, built, token, reason):
    """Only an explicit opt-out (serve --no-auth) opens mutating routes; a bad token shuts them."""
    app, store = make_app(tmp_path, token=token, auth=True)
    register(store, built, "v1")
    c = app.test_client()
    for headers in ({}, {"Authorization": f"Bearer {token}"}):
        r = c.delete("/delete/cachemodel", headers=headers)
        assert r.status_code == 503 and reason in r.get_json()["error"], r.data
    assert c.get("/status").get_json()["auth"].startswith("closed")
    assert [m.version for m in store.list_models("cachemodel")] == [1]
    store.close()
    (tmp_path / "open").mkdir()
    app, store = make_app(tmp_path / "open", auth=False)
    assert app.test_client().get("/status").get_json()["auth"] == "disabled (--no-auth)"
    store.close()


# -- cache, lazy loading, atomic swap -----------------------------------------------------------
def test_models_load_lazily_and_the_cache_is_bounded(tmp_path, built):
    app, store = make_app(tmp_path, cache_size=2)
    for name in ("a", "b", "c"):
        register(store, built, "v1", name=name)
    svc, c = service(app), app.test_client()
    assert svc.models.cached() == []
    for name in ("a", "b", "a", "c"):
        assert post_json(c, {"values": PROBES[0], "model": name}).status_code == 200
    assert sorted(m.name for m in svc.models.cached()) == ["a", "c"]   # b was least recently used
    store.close()


def test_new_version_is_swapped_in_on_refresh(app_store, built):
    app, store = app_store
    c, svc = app.test_client(), service(app)
    first = post_json(c, {"values": PROBES[0], "model": "cachemodel"}).get_json()
    register(store, built, "v2")                          # a new production version from training
    assert post_json(c, {"values": PROBES[0], "model": "cachemodel"}).get_json() == first
    assert svc.refresh_now() == ["cachemodel:1 -> cachemodel:2"]
    np.testing.assert_allclose(post_json(c, {"values": PROBES[0], "model": "cachemodel"}).get_json(),
                               expected(built, "v2", 0), rtol=1e-5)


def test_requests_in_flight_finish_on_the_old_version(app_store, built):
    app, store = app_store
    svc = service(app)
    old = svc.models.get("cachemodel")
    register(store, built, "v2")
    svc.refresh_now()
    assert svc.models.get("cachemodel").version == 2
    # a request that took its reference before the swap still runs on version 1
    np.testing.assert_allclose(old.predict(np.array([PROBES[0]], np.float32))[0], expected(built, "v1", 0),
                               rtol=1e-5)


def test_swap_under_concurrent_load_never_fails(app_store, built):
    app, store = app_store
    svc = service(app)
    v1, v2 = round(expected(built, "v1", 0)[0], 5), round(expected(built, "v2", 0)[0], 5)
    errors, seen, stop = [], [], threading.Event()

    def hammer():
        c = app.test_client()
        while not stop.is_set():
            r = post_json(c, {"values": PROBES[0], "model": "cachemodel"})
            if r.status_code != 200:
                errors.append(r.data)
            else:
                seen.append(round(r.get_json()[0], 5))

    def wait_for(value):
        start = len(seen)
        for _ in range(2000):
            if value in seen[start:]:
                return
            stop.wait(0.01)
        raise AssertionError(f"{value} never served")

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        wait_for(v1)
        register(store, built, "v2")
        svc.refresh_now()
        wait_for(v2)
        register(store, built, "v1")          # version 3, the first weights again
        svc.refresh_now()
        wait_for(v1)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    assert set(seen) == {v1, v2}


# -- operations ---------------------------------------------------------------------------------
def test_status_lists_the_models_that_models_lists(client):
    """Issue 15: /status right after /models listed a model showed "models": []."""
    assert [m["name"] for m in client.get("/models").get_json()] == ["cachemodel"]
    st = client.get("/status").get_json()
    assert st["models"] == ["cachemodel:1"] and st["loaded_models"] == []
    post_json(client, {"values": PROBES[0], "model": "cachemodel"})
    assert client.get("/status").get_json()["loaded_models"] == ["cachemodel:1"]


def test_status_healthz_metrics(client):
    post_json(client, {"values": PROBES[0], "model": "cachemodel"})
    st = client.get("/status").get_json()
    assert st["status"] == "ok" and st["models"] == ["cachemodel:1"] and st["postRequests"] >= 1
    assert st["sandbox"] == "bubblewrap" and st["auth"] == "disabled (--no-auth)"
    assert st["Memory"]["rss_bytes"] > 0 and "litert" in st["runtime"]
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/healthz?deep=1").get_json()["catalog"] == "ok"
    text = client.get("/metrics").get_data(as_text=True)
    assert 'smartcache_http_requests_total{method="POST",route="/json",status="200"} 1.0' in text
    assert 'smartcache_predicted_rows_total{model="cachemodel"} 1.0' in text


def test_openapi_documents_every_route(client):
    doc = client.get("/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    app = client.application
    routes = {(r.rule.replace("<", "{").replace(">", "}"), m.lower())
              for r in app.url_map.iter_rules() if r.endpoint != "static"
              for m in r.methods - {"HEAD", "OPTIONS"}}
    documented = {(p, m) for p, ops in doc["paths"].items() for m in ops}
    assert routes == documented
    for p in ("/upload", "/delete/{model}", "/delete"):
        op = next(iter(doc["paths"][p].values()))
        assert op["security"] == [{"bearer": []}] and "401" in op["responses"]


def test_oversized_bodies_are_413_json(tmp_path):
    app, store = make_app(tmp_path, max_upload_bytes=1000)
    c = app.test_client()
    r = c.post("/upload", data=b"\x1f\x8b" + b"x" * 5000, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 413 and "error" in r.get_json()
    store.close()


class Endless(io.RawIOBase):
    """A body that never ends (as a chunked stream can be), counting what the server reads."""

    def __init__(self, head: bytes = b""):
        self.head, self.n = head, 0

    def readable(self):
        return True

    def readinto(self, b):
        data, self.head = (self.head[:len(b)], self.head[len(b):]) if self.head else (b" " * len(b), b"")
        b[:len(data)] = data
        self.n += len(data)
        return len(data)


FILE_PART = (b'--xyz\r\nContent-Disposition: form-data; name="model"; filename="m"\r\n'
             b"Content-Type: application/octet-stream\r\n\r\n")


@pytest.mark.parametrize("path,limit", [("/json", "json"), ("/params", "json"), ("/upload", "upload")])
def test_chunked_bodies_are_cut_off_at_the_routes_limit(tmp_path, path, limit):
    """No Content-Length (Transfer-Encoding: chunked): read up to the route's limit, then 413."""
    from smartcache.inference.tfaas import JSON_MAX_BYTES
    from werkzeug.test import EnvironBuilder, run_wsgi_app
    app, store = make_app(tmp_path, max_upload_bytes=1 << 20)
    body = Endless(FILE_PART if limit == "upload" else b"")
    environ = EnvironBuilder(path=path, method="POST", headers={"Transfer-Encoding": "chunked"},
                             content_type="multipart/form-data; boundary=xyz" if limit == "upload" else None
                             ).get_environ()
    environ.pop("CONTENT_LENGTH", None)
    # as gunicorn passes a de-chunked body: a stream that ends where the chunks end (here: never)
    environ.update({"wsgi.input": io.BufferedReader(body), "wsgi.input_terminated": True})
    app_iter, status, headers = run_wsgi_app(app, environ, buffered=True)
    assert status.startswith("413") and "error" in json.loads(b"".join(app_iter)), status
    assert body.n <= (JSON_MAX_BYTES if limit == "json" else 1 << 20) + (1 << 20)
    store.close()


def test_non_finite_outputs_are_json_errors(client):
    """Values within float32 that overflow inside the model: an error, never a bare NaN."""
    r = post_json(client, {"values": [3e38, 3e38, 3e38, 3e38], "model": "cachemodel"})
    assert r.status_code == 422 and "non-finite" in r.get_json()["error"], r.data
    r = client.post("/json", data=json.dumps({"values": [[1, 1, 1, 1], [3e38, -3e38, 3e38, 3e38]],
                                              "model": "cachemodel"}))
    assert r.status_code == 422 and r.mimetype == "application/json"


@pytest.mark.parametrize("version", ["99999999999999999999999", "2147483648", "0", "-1", "1e3", "\u0661", "x"])
def test_delete_version_is_bounded_and_validated(client, version):
    r = client.delete(f"/delete/cachemodel?version={version}")
    assert r.status_code == 400 and "version must be an integer from 1 to" in r.get_json()["error"]
    assert client.delete("/delete/cachemodel?version=7").status_code == 404
    assert client.get("/models").get_json()[0]["version"] == 1


def test_config_refuses_a_non_string_token_and_an_unknown_sandbox(tmp_path):
    from smartcache.catalog.config import load_config
    from smartcache.catalog.errors import ConfigError
    for body, message in (("token = 12345", "must be a string"), ('sandbox = "maybe"', "inference.sandbox")):
        (tmp_path / "config.toml").write_text(f"[inference]\n{body}\n")
        with pytest.raises(ConfigError, match=message):
            load_config(env={}, home=tmp_path)
    (tmp_path / "config.toml").write_text('[inference]\nsandbox = "off"\n')
    assert load_config(env={}, home=tmp_path).inference.sandbox == "off"
