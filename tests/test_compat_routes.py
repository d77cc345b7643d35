"""Routes a team moving from LiteLLM keeps using: probes, model listing and model info.

Probes written for LiteLLM reach ``/health/liveliness`` and ``/health/readiness`` without
the master key; ``/health`` still needs it. The real ``openai`` SDK lists and retrieves
models; ``/model/info`` answers in LiteLLM's shape without any secret.
"""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.conftest import ProxyFactory
from tests.servers import UPSTREAM_KEY, RunningProxy

MASTER_KEY = "sk-master-1234"
AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
WILDCARD_MODELS: list[dict[str, Any]] = [
    {"model_name": "*", "litellm_params": {"model": "openai/*", "api_key": "sk-wild-secret"}},
    {"model_name": "team/*", "litellm_params": {"model": "openai/*"}},
]


@pytest.fixture
def locked(make_proxy: ProxyFactory) -> RunningProxy:
    return make_proxy({"namespace": "team-a"}, general_settings={"master_key": MASTER_KEY})


def test_probes_are_open_and_health_is_not(locked: RunningProxy) -> None:
    with locked.http() as http:
        liveliness = http.get("/health/liveliness")
        liveness = http.get("/health/liveness")
        readiness = http.get("/health/readiness")
        health = http.get("/health")
        health_with_key = http.get("/health", headers=AUTH)

    assert liveliness.status_code == liveness.status_code == 200
    assert liveliness.json() == "I'm alive!"
    assert readiness.status_code == 200
    assert health.status_code == 401
    assert health.json()["error"]["type"] == "authentication_error"
    assert health_with_key.status_code == 200


def test_readiness_has_litellms_fields_and_no_secret(locked: RunningProxy) -> None:
    with locked.http() as http:
        document = http.get("/health/readiness").json()

    assert document["status"] == "healthy"
    assert document["db"] == "Not connected"
    assert document["cache"] == "disk"
    assert isinstance(document["litellm_version"], str)
    assert document["success_callbacks"] == []
    assert isinstance(document["log_level"], str)
    assert isinstance(document["is_detailed_debug"], bool)
    assert document["cache_status"] == "configured"
    text = str(document)
    assert MASTER_KEY not in text
    assert UPSTREAM_KEY not in text


def test_readiness_does_not_give_the_reason_a_cache_is_down(make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(
        {"host": "127.0.0.1", "port": 1, "password": "redis-pw-secret"}, cache_type="redis"
    )
    with proxy.http() as http:
        ready = http.get("/health/readiness").json()
    assert ready["cache"] == "redis"
    assert ready["cache_status"] in ("configured", "unavailable")
    assert "127.0.0.1" not in str(ready)
    assert "redis-pw-secret" not in str(ready)


def test_sdk_lists_and_retrieves_models(make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(extra_models=WILDCARD_MODELS)
    with proxy.sdk() as client:
        listed = [model.id for model in client.models.list()]
        retrieved = client.models.retrieve("gpt-4o-mini")
        through_pattern = client.models.retrieve("team/some-model")

    assert "gpt-4o-mini" in listed
    assert "*" not in listed
    assert not [name for name in listed if "*" in name]
    assert retrieved.id == "gpt-4o-mini"
    assert retrieved.object == "model"
    assert through_pattern.id == "team/some-model"


def test_unknown_model_is_a_404_in_openais_shape(proxy: RunningProxy) -> None:
    with proxy.sdk() as client, pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("gpt-9-ultra")
    assert caught.value.status_code == 404
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["type"] == "not_found_error"
    assert body["code"] == "404"
    assert body["param"] == "model"
    assert "'gpt-9-ultra'" in body["message"]
    with proxy.http() as http:
        without_v1 = http.get("/models/gpt-4o-mini")
        wrong_method = http.post("/v1/models/gpt-4o-mini", json={})
    assert without_v1.status_code == 200
    assert without_v1.json()["id"] == "gpt-4o-mini"
    assert wrong_method.status_code == 405


def test_models_need_the_key_when_one_is_set(locked: RunningProxy) -> None:
    with locked.sdk(api_key="sk-wrong") as client, pytest.raises(openai.AuthenticationError):
        client.models.retrieve("gpt-4o-mini")
    with locked.sdk(api_key=MASTER_KEY) as client:
        assert client.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"


@pytest.mark.parametrize("path", ["/model/info", "/v1/model/info"])
def test_model_info_in_litellms_shape_without_secrets(make_proxy: ProxyFactory, path: str) -> None:
    info_entry = {
        "model_name": "described",
        "litellm_params": {"model": "openai/gpt-4o", "api_key": "sk-described-secret"},
        "model_info": {"id": "my-id", "description": "the described one"},
    }
    proxy = make_proxy(extra_models=[*WILDCARD_MODELS, info_entry])
    with proxy.http() as http:
        reply = http.get(path)

    assert reply.status_code == 200
    data = reply.json()["data"]
    by_name = {item["model_name"]: item for item in data}
    assert {"gpt-4o-mini", "*", "team/*", "described"} <= set(by_name)
    for item in data:
        assert set(item) == {"model_name", "litellm_params", "model_info"}
        assert "api_key" not in item["litellm_params"]
        assert item["model_info"]["id"]
        assert item["model_info"]["db_model"] is False
    assert by_name["described"]["model_info"]["id"] == "my-id"
    assert by_name["described"]["model_info"]["description"] == "the described one"
    assert (
        by_name["gpt-4o-mini"]["litellm_params"]["api_base"]
        == proxy.app.settings.model_list[0].litellm_params.api_base
    )
    text = reply.text
    for secret in (UPSTREAM_KEY, "sk-wild-secret", "sk-described-secret"):
        assert secret not in text


def test_model_ids_are_stable_and_distinct(make_proxy: ProxyFactory) -> None:
    first, second = make_proxy(), make_proxy()
    with first.http() as a, second.http() as b:
        ids_a = [item["model_info"]["id"] for item in a.get("/model/info").json()["data"]]
        ids_b = [item["model_info"]["id"] for item in b.get("/model/info").json()["data"]]
    assert ids_a == ids_b
    assert len(set(ids_a)) == len(ids_a)
