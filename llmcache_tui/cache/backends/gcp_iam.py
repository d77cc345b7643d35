"""GCP IAM authentication for Memorystore Redis Cluster: a short-lived access token as password.

The token comes from Google's IAM Credentials API (the optional ``google-cloud-iam``
package, ``pip install 'llmcache-tui[gcp]'``) for the configured service account, and is
refreshed a few minutes before it expires. ``fetch_token`` can be replaced, which is how
the plumbing is tested against a local Redis whose password is the token.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from redis.credentials import CredentialProvider

from llmcache_tui.cache.backends.base import CacheBackendError

TokenFetcher = Callable[[str], tuple[str, float]]  # service account -> (token, expires at)
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
REFRESH_MARGIN = 300.0


class GcpIamCredentialProvider(CredentialProvider):
    """Gives redis-py ``("default", <access token>)`` for every new connection."""

    def __init__(self, service_account: str, fetch_token: TokenFetcher | None = None) -> None:
        self.service_account = service_account
        self._fetch = fetch_token or fetch_google_token
        self._token = ""
        self._expires_at = 0.0
        self._lock = threading.Lock()

    def get_credentials(self) -> tuple[str, str]:
        with self._lock:
            if time.time() > self._expires_at - REFRESH_MARGIN:
                self._token, self._expires_at = self._fetch(self.service_account)
            return ("default", self._token)

    async def get_credentials_async(self) -> tuple[str, str]:
        # Fetching a token is a blocking HTTP call: keep it off the event loop.
        return await asyncio.to_thread(self.get_credentials)


def fetch_google_token(service_account: str) -> tuple[str, float]:
    """Ask Google's IAM Credentials API for an access token for ``service_account``."""
    try:
        from google.cloud import iam_credentials_v1
    except ImportError:
        raise CacheBackendError(
            "gcp_service_account needs the google-cloud-iam package:"
            " pip install 'llmcache-tui[gcp]'"
        ) from None
    client = iam_credentials_v1.IAMCredentialsClient()
    response = client.generate_access_token(name=service_account, scope=[CLOUD_PLATFORM_SCOPE])
    return str(response.access_token), float(response.expire_time.timestamp())
