"""The model routes: OpenAI's ``/v1/models`` and ``/v1/models/{id}``, LiteLLM's ``/model/info``.

``/models`` lists the names a client can send as they are; a pattern entry (``*``,
``openai/*``) is not a model, so it is left out of the list, while a name it matches is
still found by ``/models/{id}``. ``/model/info`` describes every ``model_list`` entry,
patterns included, in LiteLLM's shape, without ``api_key`` and with every other secret
masked.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import orjson

from llmcache_tui.config import ModelEntry
from llmcache_tui.proxy.asgi import Receive, Scope, Send, send_json
from llmcache_tui.proxy.errors import echo, error_body

if TYPE_CHECKING:
    from llmcache_tui.proxy.app import Handler, ProxyApp

#: the path prefix of ``/models/{id}`` (after ``/v1`` is taken off)
MODEL_PREFIX = "/models/"
OWNER = "llmcache-tui"


def model_object(name: str) -> dict[str, Any]:
    """One model in OpenAI's shape."""
    return {"id": name, "object": "model", "created": 0, "owned_by": OWNER}


async def models(app: ProxyApp, scope: Scope, receive: Receive, send: Send) -> None:
    data = [model_object(name) for name in app.router.models]
    await send_json(send, 200, {"object": "list", "data": data})


async def model(app: ProxyApp, scope: Scope, receive: Receive, send: Send) -> None:
    """``GET /models/{id}``: the id may hold ``/`` (``openai/gpt-4o``), so all of the rest."""
    path = scope["path"]
    name = path[path.index(MODEL_PREFIX) + len(MODEL_PREFIX) :]
    if name and app.router.serves(name):
        await send_json(send, 200, model_object(name))
        return
    message = f"the model {echo(name)} does not exist (GET /v1/models lists the models)"
    await send_json(send, 404, error_body(404, message, param="model"))


async def model_info(app: ProxyApp, scope: Scope, receive: Receive, send: Send) -> None:
    data = [_describe(app, entry) for entry in app.settings.model_list]
    await send_json(send, 200, {"data": data})


def _describe(app: ProxyApp, entry: ModelEntry) -> dict[str, Any]:
    params = entry.litellm_params.model_dump(exclude_none=True)
    params.pop("api_key", None)  # never shown, not even masked: LiteLLM leaves it out too
    # Every key the config gave, the prices and LiteLLM's others (id, mode, ...) alike.
    info: dict[str, Any] = entry.model_info.model_dump(exclude_none=True)
    info.setdefault("id", _entry_id(entry))
    info.setdefault("db_model", False)  # always from config.yaml here, never a database
    provider, _, rest = entry.litellm_params.model.partition("/")
    info.setdefault("litellm_provider", provider if rest else "openai")
    document = {"model_name": entry.model_name, "litellm_params": params, "model_info": info}
    # Masks secret-named keys (api_version is not one) and any secret value of the config.
    described: dict[str, Any] = app.settings.redactor.redact(document)
    return described


def _entry_id(entry: ModelEntry) -> str:
    """A stable id for an entry without one: a digest of its name and where it goes.

    Built from the public parts only, so the id says nothing about the key."""
    public = {
        "model_name": entry.model_name,
        "model": entry.litellm_params.model,
        "api_base": entry.litellm_params.api_base,
        "api_version": entry.litellm_params.api_version,
    }
    return hashlib.sha256(orjson.dumps(public, option=orjson.OPT_SORT_KEYS)).hexdigest()


ROUTES: dict[str, tuple[str, Handler]] = {
    "/models": ("GET", models),
    "/model/info": ("GET", model_info),
}
