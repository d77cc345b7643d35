"""Who is calling: the master key, a tenant's API key, or a trusted gateway naming a tenant.

With ``general_settings.master_key`` or ``llmcache.api_keys`` set, every route but the
liveness probes needs one of those keys (``Authorization: Bearer <key>``, or ``api-key``).
Keys are compared in constant time, and every configured key is compared on every request,
so the time taken says nothing about which key, or how much of one, was right.

Under ``llmcache.isolation: tenant`` each caller has a tenant, the scope of every entry it
reads or writes: its API key's tenant; :data:`MASTER_TENANT` for the master key; or the
tenant named in the ``x-llmcache-tenant`` header, which is believed only from the master
key or a peer address in ``llmcache.trusted_gateways`` and refused with a 400 from anyone
else (a client must not pick another tenant's scope, and a misconfigured gateway should
fail loudly rather than merge all its users into one tenant). Under ``shared`` isolation
the header is ignored and entries are shared, as without tenants.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass

from llmcache_tui.config import TENANT_PATTERN, TENANT_RULE, Settings
from llmcache_tui.proxy.asgi import Scope, header
from llmcache_tui.proxy.errors import ProxyError

#: the scope of the master key's entries under tenant isolation (no tenant may be called so)
MASTER_TENANT = "_master"
TENANT_HEADER = b"x-llmcache-tenant"
#: where a request's :class:`Caller` is kept in its ASGI scope, for the route that answers
CALLER = "llmcache.caller"


@dataclass(frozen=True, slots=True)
class Caller:
    """The client of one request: its tenant (None: entries are shared) and whether it
    holds the master key (or no key is needed at all), which may delete any entry."""

    tenant: str | None
    master: bool


OPEN = Caller(tenant=None, master=True)  # no key configured, entries shared: as before tenants


class Authenticator:
    """Turns a request's credentials and peer address into a :class:`Caller`."""

    def __init__(self, settings: Settings) -> None:
        app = settings.app
        self._master_key = settings.master_key.encode() if settings.master_key else None
        self._keys = [(e.key.encode(), e.tenant) for e in app.api_keys if e.key and e.tenant]
        self.required = self._master_key is not None or bool(self._keys)
        self.isolated = app.isolation == "tenant"
        self._gateways = [ipaddress.ip_network(g, strict=False) for g in app.trusted_gateways]

    @property
    def hint(self) -> str:
        """What a client that sent no valid key should send."""
        which = "<master_key>" if not self._keys else "<API key>"
        return f"send 'Authorization: Bearer {which}'"

    def identify(self, scope: Scope) -> Caller:
        """The caller of a request; raises :class:`ProxyError` (401 or 400) if it may not
        call at all."""
        master, tenant = self._credentials(scope)
        if not self.isolated:
            return OPEN if master and not self.required else Caller(None, master)
        named = header(scope, TENANT_HEADER)
        if named is not None:
            if not (master or self._from_gateway(scope)):
                raise ProxyError(
                    400,
                    f"{TENANT_HEADER.decode()} is accepted only from llmcache.trusted_gateways"
                    " or with the master key",
                    param=TENANT_HEADER.decode(),
                )
            return Caller(_tenant_name(named), master)
        if tenant is None and master and self._master_key is not None:
            tenant = MASTER_TENANT
        if tenant is None:
            # Only gateways configured, and this request came without one naming a tenant.
            raise ProxyError(
                401,
                f"isolation is per tenant: {self.hint}, or call through a trusted gateway",
            )
        return Caller(tenant, master)

    def _credentials(self, scope: Scope) -> tuple[bool, str | None]:
        """(holds the master key, the tenant of the API key it holds); 401 if neither."""
        if not self.required:
            # Without keys every caller may do what the master key may, as before tenants;
            # under isolation only a gateway's header gives it a tenant.
            return not self.isolated, None
        given = presented_key(scope)
        if given is None:
            raise self._refused()
        master = self._master_key is not None and hmac.compare_digest(given, self._master_key)
        tenant = None
        for key, owner in self._keys:  # no early exit: every key costs the same time
            if hmac.compare_digest(given, key):
                tenant = owner
        if not master and tenant is None:
            raise self._refused()
        return master, tenant

    def _refused(self) -> ProxyError:
        message = f"missing or invalid API key: {self.hint}"
        return ProxyError(401, message)

    def _from_gateway(self, scope: Scope) -> bool:
        client = scope.get("client")
        if not client or not self._gateways:
            return False
        try:
            address = ipaddress.ip_address(client[0])
        except ValueError:  # a Unix socket peer has no IP address
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # "::ffff:10.0.0.1" is 10.0.0.1
        return any(address in network for network in self._gateways)


def caller_of(scope: Scope) -> Caller:
    """Who sent a request that passed :meth:`Authenticator.identify`."""
    caller: Caller = scope[CALLER]
    return caller


def presented_key(scope: Scope) -> bytes | None:
    """The key a request carries (``Authorization: Bearer``, else ``api-key``), or None."""
    given = header(scope, b"authorization")
    if given is None:
        given = header(scope, b"api-key")
        if given is None:
            return None
    else:
        # "Bearer", "bearer", "BEARER": the scheme is case-insensitive (RFC 9110 11.1),
        # and one or more spaces separate it from the token; the key itself is not.
        scheme, _, given = given.partition(b" ")
        if scheme.lower() != b"bearer":
            return None
    # Whitespace around a field value is not part of it (RFC 9110 5.5); the HTTP
    # parser leaves trailing whitespace in.
    return given.strip(b" \t")


def _tenant_name(raw: bytes) -> str:
    name = raw.decode("latin-1").strip(" \t")
    if not TENANT_PATTERN.fullmatch(name):
        raise ProxyError(
            400,
            f"{TENANT_HEADER.decode()}: not a tenant name ({TENANT_RULE})",
            param=TENANT_HEADER.decode(),
        )
    return name
