"""Keep secrets out of everything we show: settings, URLs, error messages and logs.

Three rules, kept in this one module so there is one place to get right:

- by name: a mapping key or URL query parameter whose name looks like a credential
  (``password``, ``token``, ``api_key``, ``sig``, ...) has its value masked;
- in URLs: wherever a ``scheme://`` URL appears in a text, the password of its userinfo and
  every credential-like query or fragment parameter are masked;
- by value: a :class:`Redactor` knows the secret values the loaded settings hold and
  replaces them wherever they appear, because a client library's error message may quote
  a password in a shape no rule above would recognise.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, unquote

MASK = "********"

# "token" but not "max_tokens" or "tokenizer": a token count is not a secret. Any name
# ending in "_key" or "-key" is (OPENAI_KEY, private_key, x-api-key, ...), and so is a
# query parameter called just "key", "sig" or "pass".
_SECRET_NAME = re.compile(
    r"pass(?:word|wd|phrase)|pwd|secret|token(?![a-z])|credential|auth|signature"
    r"|api_?key|access_?key|(?:^|[_.-])(?:key|sig|pass)$",
    re.IGNORECASE,
)
# A URL runs from its scheme to the next whitespace: a password may hold any other
# character (a raw "@", "/", "?" or "#" makes the URL invalid, but it must not leak).
_URL = re.compile(r"[a-z][a-z0-9+.-]*://\S*", re.IGNORECASE)
# One ``name=value`` of a query or fragment, with the separator before it.
_PARAMETER = re.compile(r"([?#&;])([^=?#&;]*)=([^?#&;]*)")
# Shorter known values are masked where a rule finds them, but not searched for in free
# text: replacing every "a" or "42" in a message would garble it.
MIN_SCRUBBED_LENGTH = 4


def is_secret_name(name: str) -> bool:
    """Whether a key or parameter called ``name`` holds a credential."""
    return _SECRET_NAME.search(name) is not None


def mask_url(text: str) -> str:
    """``text`` with the userinfo password and the credential-like query (and fragment)
    parameters of every URL in it masked.

    The userinfo ends at the last ``@`` of the URL, so a raw ``@`` in a password is masked
    whole; the price is that an ``@`` later in a path or query masks more than needed.
    """
    if "://" not in text:
        return text
    return _URL.sub(_mask_one_url, text)


def url_secrets(text: str) -> set[str]:
    """The passwords and credential-like parameter values of the URLs in ``text``, as
    written and percent-decoded."""
    found: set[str] = set()
    if "://" not in text:
        return found
    for match in _URL.finditer(text):
        _, rest = match.group().split("://", 1)
        userinfo, at, hostpart = rest.rpartition("@")
        if at:
            _, colon, password = userinfo.partition(":")
            if colon and password:
                found |= {password, unquote(password)}
        for _, value in _secret_parameters(hostpart):
            found |= {value, unquote(value)}
    found.discard("")
    return found


def secrets_in(value: Any, key: str = "") -> set[str]:
    """Every secret value in a settings structure: what a secret-named key holds, and the
    passwords and credential parameters of the URLs in any string."""
    found: set[str] = set()
    if isinstance(value, Mapping):
        for name, item in value.items():
            found |= secrets_in(item, key if is_secret_name(key) else str(name))
    elif isinstance(value, list | tuple):
        for item in value:
            found |= secrets_in(item, key)
    elif isinstance(value, str):
        if key and is_secret_name(key) and value:
            found.add(value)
        found |= url_secrets(value)
    elif isinstance(value, int | float) and not isinstance(value, bool) and is_secret_name(key):
        found.add(str(value))  # a numeric password in YAML
    return found


class Redactor:
    """Masks secrets in text and in structures: by name, in URLs, and known values.

    Immutable: :meth:`extended` gives a new one that knows more secrets.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = frozenset(s for s in secrets if s)
        forms: set[str] = set()
        for secret in self.secrets:
            if len(secret) >= MIN_SCRUBBED_LENGTH:
                # As written, percent-quoted in a URL, and escaped in a repr().
                forms |= {secret, quote(secret, safe=""), quote(secret), repr(secret)[1:-1]}
        # Longest first, so a secret that contains another is masked whole.
        alternatives = sorted(forms, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, alternatives))) if forms else None

    def extended(self, secrets: Iterable[str]) -> Redactor:
        """A redactor that also knows ``secrets``."""
        more = frozenset(s for s in secrets if s)
        return self if more <= self.secrets else Redactor(self.secrets | more)

    def scrub(self, text: str) -> str:
        """``text`` with URL credentials and every known secret masked."""
        text = mask_url(text)
        if self._pattern is not None:
            text = self._pattern.sub(MASK, text)
        return text

    def redact(self, value: Any, key: str = "") -> Any:
        """A copy of ``value`` (mappings, lists, scalars) safe to show: the values of
        secret-named keys masked, every string scrubbed."""
        if isinstance(value, Mapping):
            return {k: self.redact(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact(v, key) for v in value]
        if value is not None and key and is_secret_name(key):
            return MASK
        if isinstance(value, str):
            return self.scrub(value)
        return value

    def __repr__(self) -> str:
        return f"Redactor({len(self.secrets)} secrets)"


NO_SECRETS = Redactor()


def mask_secrets(value: Any, key: str = "") -> Any:
    """``value`` with secret-named keys and URL credentials masked (no known values)."""
    return NO_SECRETS.redact(value, key)


def _mask_one_url(match: re.Match[str]) -> str:
    scheme, rest = match.group().split("://", 1)
    userinfo, at, hostpart = rest.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        userinfo = f"{user}:{MASK}@" if colon else userinfo + "@"
    head, parameters = _split_parameters(hostpart)
    return f"{scheme}://{userinfo}{head}{_PARAMETER.sub(_mask_parameter, parameters)}"


def _mask_parameter(match: re.Match[str]) -> str:
    separator, name, value = match.groups()
    if value and is_secret_name(unquote(name)):
        return f"{separator}{name}={MASK}"
    return match.group()


def _secret_parameters(hostpart: str) -> list[tuple[str, str]]:
    """The ``(name, value)`` pairs of the query and fragment whose name is a credential's."""
    _, parameters = _split_parameters(hostpart)
    return [
        (name, value)
        for _, name, value in _PARAMETER.findall(parameters)
        if value and is_secret_name(unquote(name))
    ]


def _split_parameters(hostpart: str) -> tuple[str, str]:
    """Host and path, then the query and fragment (from the first ``?`` or ``#``)."""
    found = [i for i in (hostpart.find("?"), hostpart.find("#")) if i >= 0]
    start = min(found) if found else len(hostpart)
    return hostpart[:start], hostpart[start:]
