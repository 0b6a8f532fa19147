"""The OpenAPI documents against the live API: every answer the service gives (successes and
each error) validates against /openapi.json with openapi-core; the document is fit to import
as chatbot tools (descriptions, examples, one ask operation, no admin operations)."""

from __future__ import annotations

import pytest
from openapi_core import OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from openapi_spec_validator import validate
from werkzeug.test import EnvironBuilder

from qa.web import create_app

Q = "古籍修复体验课每期限报多少人?"
PUBLIC = "https://qa.example.org"


@pytest.fixture
def spec(client) -> OpenAPI:
    """The served tool document, ready for openapi-core."""
    return OpenAPI.from_dict(client.get("/openapi.json").json)


def _call(client, spec: OpenAPI, method: str, path: str, *, valid_request: bool = True,
          base_url: str = "http://localhost", **kwargs):
    """Send a request and validate the response (and, when it should be, the request)."""
    request = EnvironBuilder(method=method, path=path, base_url=base_url, **kwargs).get_request()
    response = client.open(EnvironBuilder(method=method, path=path, base_url=base_url, **kwargs))
    if valid_request:
        spec.validate_request(WerkzeugOpenAPIRequest(request))
    spec.validate_response(WerkzeugOpenAPIRequest(request), WerkzeugOpenAPIResponse(response))
    return response


# ---------------------------------------------------------------- the documents

def test_the_tool_document_imports_cleanly(client):
    doc = client.get("/openapi.json").json
    validate(doc)
    assert set(doc["paths"]) == {"/api/ask", "/api/issues", "/api/story/{file}/{story}",
                                 "/healthz"}
    assert list(doc["paths"]["/api/ask"]) == ["post"]  # one ask tool, not two
    ops = [op for item in doc["paths"].values() for op in item.values()]
    assert [op["operationId"] for op in ops] == ["ask", "listIssues", "getStory", "health"]
    for op in ops:
        assert op["summary"] and len(op["description"]) > 40, op["operationId"]
        assert "200" in op["responses"]
        for response in op["responses"].values():
            content = response.get("content", {}).get("application/json")
            assert content and "example" in content, op["operationId"]
        for param in op.get("parameters", []):
            assert param["description"] and "example" in param, param["name"]
    body = doc["paths"]["/api/ask"]["post"]["requestBody"]["content"]["application/json"]
    assert body["example"]["question"]
    schemas = doc["components"]["schemas"]
    assert schemas["AskRequest"]["additionalProperties"] is False
    for name in ("question", "top_k", "filters"):
        assert schemas["AskRequest"]["properties"][name]
    for name, prop in schemas["Filters"]["properties"].items():
        assert prop["description"] and "example" in prop, name
    assert {"paper", "date", "edition"} <= set(schemas["Citation"]["properties"])
    assert schemas["Issues"]["properties"]["issues"]["items"] == {
        "$ref": "#/components/schemas/Issue"}
    assert schemas["Story"]["properties"]["paragraphs"]["items"]["required"] == [
        "paragraph", "text", "lines"]
    assert "securitySchemes" not in doc["components"]


def test_admin_operations_have_their_own_document(client):
    doc = client.get("/openapi-admin.json").json
    validate(doc)
    assert set(doc["paths"]) == {"/api/admin/issues", "/api/admin/jobs/{job}"}
    for item in doc["paths"].values():
        for op in item.values():
            assert op["security"] == [{"bearer": []}] and op["description"]


def test_the_get_form_of_ask_still_answers(client):
    r = client.get("/api/ask", query_string={"q": Q, "top_k": 1})
    assert r.status_code == 200 and len(r.json["answers"]) == 1


# ---------------------------------------------------------------- live answers, validated

def test_ask(client, spec):
    r = _call(client, spec, "POST", "/api/ask", json={"question": Q, "top_k": 2})
    assert r.status_code == 200 and r.json["answerable"] is True
    assert r.json["answers"][0]["short"]["text"] == "20人"


def test_ask_refusal(client, spec):
    r = _call(client, spec, "POST", "/api/ask",
              json={"question": "青山镇老街有多少年轻人返乡创业?"})
    assert r.status_code == 200 and r.json["answerable"] is False


def test_ask_with_filters(client, spec):
    r = _call(client, spec, "POST", "/api/ask",
              json={"question": Q, "filters": {"date_from": "2024-01-01"}})
    # the fixture issues carry no date: a date condition leaves none of them
    assert r.status_code == 200 and r.json["answers"] == [] and r.json["answerable"] is False


def test_story(client, spec):
    r = _call(client, spec, "GET", "/api/story/a_2024-01.txt/2",
              query_string={"generation": "gen-000001"})
    assert r.status_code == 200 and r.json["title"] == "老街改造留住乡愁"
    assert r.json["url"] == "/story/a_2024-01.txt/2?generation=gen-000001"


def test_issues(client, spec):
    r = _call(client, spec, "GET", "/api/issues")
    assert [i["file"] for i in r.json["issues"]] == ["a_2024-01.txt", "b_2024-02.txt"]


def test_healthz(client, spec):
    r = _call(client, spec, "GET", "/healthz")
    assert r.status_code == 200 and r.json["status"] == "ok"


# ---------------------------------------------------------------- each error, validated

@pytest.mark.parametrize(("kwargs", "message"), [
    ({"json": {"question": Q, "topk": 3}}, "unknown field(s) 'topk'; allowed: question, top_k, "
                                           "filters"),
    ({"json": {"question": Q, "filters": {"newspaper": "x"}}}, "unknown filter field(s)"),
    ({"json": {"question": Q, "filters": {"date_to": "yesterday"}}}, "YYYY-MM-DD"),
    ({"json": {"question": ""}}, "question is empty"),
    ({"json": {"question": Q, "top_k": 0}}, "top_k must be between 1 and 50"),
    ({"data": "question=x"}, "body must be JSON"),
])
def test_ask_400(client, spec, kwargs, message):
    r = _call(client, spec, "POST", "/api/ask", valid_request=False, **kwargs)
    assert r.status_code == 400 and message in r.json["error"]["message"]


def test_unknown_get_parameters_are_rejected_too(client):
    r = client.get("/api/ask", query_string={"q": Q, "topk": 3})
    assert r.status_code == 400 and "'topk'" in r.json["error"]["message"]


def test_the_document_rejects_what_the_api_rejects(spec):
    from openapi_core.exceptions import OpenAPIError

    request = EnvironBuilder(method="POST", path="/api/ask",
                             json={"question": Q, "topk": 3}).get_request()
    with pytest.raises(OpenAPIError):
        spec.validate_request(WerkzeugOpenAPIRequest(request))


def test_ask_413(client, spec):
    r = _call(client, spec, "POST", "/api/ask", valid_request=False,
              data='{"question": "' + "x" * 70000 + '"}', content_type="application/json")
    assert r.status_code == 413


def test_story_400_and_404s(client, spec):
    r = _call(client, spec, "GET", "/api/story/a_2024-01.txt/0", valid_request=False)
    assert r.status_code == 400 and r.json["error"]["message"] == "story must be a positive integer"
    r = _call(client, spec, "GET", "/api/story/a_2024-01.txt/7")
    assert r.status_code == 404 and "no story 7 in a_2024-01.txt" in r.json["error"]["message"]
    r = _call(client, spec, "GET", "/api/story/a_2024-01.txt/1",
              query_string={"generation": "gen-999999"})
    assert r.status_code == 404 and "is not on this server" in r.json["error"]["message"]


def test_429(built, settings, spec):
    client = create_app(settings.with_(reload_interval=0, rate_limit_per_minute=1)).test_client()
    _call(client, spec, "GET", "/api/issues")
    r = _call(client, spec, "POST", "/api/ask", json={"question": Q})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1


def test_500(app, client, spec, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(app.extensions["qa.holder"].searcher, "ask", boom)
    r = _call(client, spec, "POST", "/api/ask", json={"question": Q})
    assert r.status_code == 500 and "secret" not in r.text


def test_503_before_an_index_exists(settings):
    client = create_app(settings.with_(reload_interval=0)).test_client()
    spec = OpenAPI.from_dict(client.get("/openapi.json").json)  # served without an index too
    assert _call(client, spec, "GET", "/healthz").status_code == 503
    assert _call(client, spec, "POST", "/api/ask", json={"question": Q}).status_code == 503
    assert _call(client, spec, "GET", "/api/issues").status_code == 503
    assert _call(client, spec, "GET", "/api/story/a_2024-01.txt/1").status_code == 503


# ---------------------------------------------------------------- absolute citation links

def test_citation_links_are_absolute_with_a_public_url(built, settings):
    client = create_app(settings.with_(reload_interval=0, rate_limit_per_minute=0,
                                       public_url=PUBLIC + "/")).test_client()
    doc = client.get("/openapi.json").json
    assert doc["servers"] == [{"url": PUBLIC}]
    spec = OpenAPI.from_dict(doc)
    r = _call(client, spec, "POST", "/api/ask", base_url=PUBLIC, json={"question": Q})
    assert r.json["answers"][0]["citation"]["url"] == \
        PUBLIC + "/story/b_2024-02.txt/2?generation=gen-000001#p2"
    story = _call(client, spec, "GET", "/api/story/b_2024-02.txt/2", base_url=PUBLIC).json
    assert story["url"] == PUBLIC + "/story/b_2024-02.txt/2?generation=gen-000001"
