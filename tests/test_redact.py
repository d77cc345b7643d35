"""Masking secrets (llmcache_tui/redact.py) and the log filter (llmcache_tui/log_redaction.py).

Property tests: a password of any URL-hostile characters (``@ : / ? # %`` ...) never shows
in a masked URL, whether it sits in the userinfo (raw, with a raw ``@``) or in a query
parameter (percent-encoded), and a known secret never shows in any text a Redactor scrubs.
"""

from __future__ import annotations

import logging
import sys
from urllib.parse import quote

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from llmcache_tui.config import parse_settings
from llmcache_tui.log_redaction import RedactingFilter, install_log_redaction
from llmcache_tui.redact import (
    MASK,
    Redactor,
    is_secret_name,
    mask_secrets,
    mask_url,
    secrets_in,
    url_secrets,
)

# Printable, no whitespace (which ends a URL in a text) and no "*" (the mask's own).
URL_HOSTILE = st.characters(
    min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters="*"
) | st.sampled_from("@:/?#%&=é€")
PASSWORDS = st.text(URL_HOSTILE, min_size=1, max_size=40)
SECRET_NAMES = [
    "password",
    "PASSWORD",
    "Passwd",
    "pwd",
    "pass",
    "secret",
    "client_secret",
    "token",
    "access_token",
    "X-Amz-Security-Token",
    "key",
    "api_key",
    "api-key",
    "x-api-key",
    "apikey",
    "access_key",
    "secret_key",
    "sig",
    "signature",
    "X-Amz-Signature",
    "credential",
    "X-Amz-Credential",
    "auth",
    "auth_token",
    "master_key",
    "sentinel_password",
]
PLAIN_NAMES = ["host", "port", "db", "max_tokens", "tokenizer", "keymap", "namespace", "ttl"]


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_credential_like_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", PLAIN_NAMES)
def test_plain_names(name: str) -> None:
    assert not is_secret_name(name)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://user:p@ss@host:6379/0", f"redis://user:{MASK}@host:6379/0"),
        ("redis://:p@ss:w@host:6379", f"redis://:{MASK}@host:6379"),
        ("redis://host:6379/0?password=hunter2", f"redis://host:6379/0?password={MASK}"),
        ("redis://h/0?db=1&PassWord=x&ssl=true", f"redis://h/0?db=1&PassWord={MASK}&ssl=true"),
        (
            "https://h/o?X-Amz-Signature=ab&X-Amz-Date=1",
            f"https://h/o?X-Amz-Signature={MASK}&X-Amz-Date=1",
        ),
        ("https://h/cb#access_token=abc&state=1", f"https://h/cb#access_token={MASK}&state=1"),
        ("https://h/v1?key=AIza&alt=sse", f"https://h/v1?key={MASK}&alt=sse"),
        ("https://h/v1?p%61ssword=x", f"https://h/v1?p%61ssword={MASK}"),
        ("https://h/a?keymap=1&max_tokens=5", "https://h/a?keymap=1&max_tokens=5"),
        ("https://example.com/users/me@example.com", "https://example.com/users/me@example.com"),
        ("redis://user@host:6379", "redis://user@host:6379"),
        ("not a url: user:pw@host", "not a url: user:pw@host"),
        (
            "Error connecting to 'redis://u:p@ss@h:1/0?token=t'. Refused.",
            # A value is masked up to the next separator or whitespace: a raw quote may
            # be part of it.
            f"Error connecting to 'redis://u:{MASK}@h:1/0?token={MASK} Refused.",
        ),
        ("see redis://a:b@h and https://c:d@e", f"see redis://a:{MASK}@h and https://c:{MASK}@e"),
    ],
)
def test_mask_url(url: str, expected: str) -> None:
    assert mask_url(url) == expected


@given(password=PASSWORDS)
@example(password="p@ss:w/rd!")
@example(password="a/b?c#d@e")
def test_a_userinfo_password_never_shows(password: str) -> None:
    url = f"redis://alice:{password}@cache.internal:6379/0"
    assert mask_url(url) == f"redis://alice:{MASK}@cache.internal:6379/0"
    in_text = f"Error 111 connecting to {url}. Connection refused."
    assert mask_url(in_text) == f"Error 111 connecting to {mask_url(url)}. Connection refused."
    assert password in url_secrets(url)


@given(password=PASSWORDS, name=st.sampled_from(SECRET_NAMES))
def test_a_query_credential_never_shows(password: str, name: str) -> None:
    url = f"rediss://cache.internal:6380/2?ssl_cert_reqs=none&{name}={quote(password)}#x"
    assert mask_url(url) == f"rediss://cache.internal:6380/2?ssl_cert_reqs=none&{name}={MASK}#x"
    assert password in url_secrets(url)


@given(
    secret=st.text(URL_HOSTILE, min_size=4, max_size=40),
    before=st.text(max_size=30),
    after=st.text(max_size=30),
)
def test_a_known_secret_never_shows_in_a_scrubbed_text(
    secret: str, before: str, after: str
) -> None:
    assume(secret not in before + after)
    redactor = Redactor([secret])
    for shape in (secret, quote(secret, safe=""), repr(secret)):
        scrubbed = redactor.scrub(before + shape + after)
        assert secret not in scrubbed
        assert MASK in scrubbed


def test_short_known_values_are_not_searched_for() -> None:
    redactor = Redactor(["abc"])
    assert redactor.scrub("abc def") == "abc def"  # masked where a rule finds it only
    assert redactor.redact({"password": "abc"}) == {"password": MASK}


def test_secrets_in_a_config_structure() -> None:
    config = {
        "general_settings": {"master_key": "sk-master"},
        "model_list": [{"litellm_params": {"api_key": "sk-up", "api_base": "https://u:pw@h"}}],
        "litellm_settings": {
            "cache_params": {"url": "redis://h/0?password=a%40b", "port": 6379, "password": 1234}
        },
        "credentials": {"nested": {"value": "deep-secret"}},
    }
    assert secrets_in(config) == {"sk-master", "sk-up", "pw", "a%40b", "a@b", "1234", "deep-secret"}


def test_settings_know_their_secrets_and_the_redis_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/0?password=from-the-variable")
    monkeypatch.setenv("REDIS_PASSWORD", "another-variable-secret")
    monkeypatch.setenv("OPENAI_KEY_FOR_TEST", "sk-from-os-environ")
    settings = parse_settings(
        "general_settings: {master_key: sk-master-key-1}\n"
        "model_list:\n"
        "  - model_name: m\n"
        "    litellm_params: {model: openai/m, api_key: os.environ/OPENAI_KEY_FOR_TEST}\n"
        "litellm_settings: {cache: true, cache_params: {type: redis}}\n"
    )
    text = "sk-master-key-1 sk-from-os-environ from-the-variable another-variable-secret"
    assert settings.redactor.scrub(text) == " ".join([MASK] * 4)
    assert settings.cache is not None
    assert settings.cache.redactor is settings.redactor
    assert "sk-master-key-1" not in repr(settings)


def test_mask_secrets_masks_names_and_urls_but_knows_no_values() -> None:
    value = {"url": "redis://u:pw@h/0?auth=x", "nodes": [{"password": "p"}], "note": "pw"}
    assert mask_secrets(value) == {
        "url": f"redis://u:{MASK}@h/0?auth={MASK}",
        "nodes": [{"password": MASK}],
        "note": "pw",
    }


# --------------------------------------------------------------------------- the log filter


def _record(
    name: str, msg: str, *args: object, exc: BaseException | None = None
) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord(name, logging.WARNING, __file__, 1, msg, args, exc_info)


def test_access_lines_lose_their_query_and_keep_their_shape() -> None:
    record = _record(
        "uvicorn.access",
        '%s - "%s %s HTTP/%s" %d',
        "127.0.0.1:5000",
        "GET",
        "/health?key=sk-master-key-1&x=1",
        "1.1",
        200,
    )
    assert RedactingFilter(Redactor(["sk-master-key-1"])).filter(record)
    assert record.args == ("127.0.0.1:5000", "GET", "/health", "1.1", 200)
    assert record.getMessage() == '127.0.0.1:5000 - "GET /health HTTP/1.1" 200'


def test_other_records_and_their_tracebacks_are_scrubbed() -> None:
    try:
        raise ConnectionError("AUTH hunter2-secret refused at redis://:hunter2-secret@h:1")
    except ConnectionError as exc:
        record = _record("llmcache_tui.cache", "cache failed: %s (%d%%)", exc, 50, exc=exc)
    RedactingFilter(lambda: Redactor(["hunter2-secret"])).filter(record)
    formatted = logging.Formatter("%(message)s").format(record)
    assert "hunter2-secret" not in formatted
    assert record.getMessage() == (
        f"cache failed: AUTH {MASK} refused at redis://:{MASK}@h:1 (50%)"
    )
    assert "Traceback" in formatted


def test_install_covers_root_handlers_uvicorn_and_the_last_resort(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stdout)
    root.addHandler(handler)
    try:
        install_log_redaction(Redactor(["root-handler-secret"]))
        second = install_log_redaction(Redactor(["root-handler-secret"]))
        assert [f for f in handler.filters if isinstance(f, RedactingFilter)] == [second]
        logging.getLogger("llmcache_tui.test").warning("x root-handler-secret")
        assert logging.lastResort is not None
        logging.lastResort.handle(_record("no.handler", "y root-handler-secret"))
    finally:
        root.removeHandler(handler)
        for target in (
            logging.lastResort,
            *(logging.getLogger(n) for n in ("uvicorn.error", "uvicorn.access")),
        ):
            if target is not None:
                target.removeFilter(second)
    out, err = capsys.readouterr()
    assert f"x {MASK}" in out
    assert f"y {MASK}" in err
    assert "root-handler-secret" not in out + err


def test_a_record_whose_arguments_do_not_fit_passes_unchanged() -> None:
    record = _record("llmcache_tui.x", "%d items", "not a number")
    assert RedactingFilter(Redactor(["a-secret"])).filter(record)
    assert record.args == ("not a number",)
