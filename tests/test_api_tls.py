"""Prefect's API clients share one TLS context per setting (flows.settings.share_api_tls_contexts).

The claim: the context is the one Prefect would build (certifi's whole bundle, or none checked
when TLS verification is off), built once, and a client given its own `verify` keeps it.
"""

from __future__ import annotations

import ssl

import pytest

pytestmark = pytest.mark.usefixtures("prefect_api")


def _context(client) -> ssl.SSLContext:
    inner = client._client  # the httpx client under Prefect's
    return inner._transport._pool._ssl_context


def test_every_client_shares_the_context_prefect_would_build():
    from prefect.client.orchestration import get_client

    import flows.pipeline  # noqa: F401  (the flow's module shares them for its process)

    contexts = [_context(get_client()), _context(get_client(sync_client=True)), _context(get_client())]
    assert contexts[0] is contexts[1] is contexts[2]
    shared = contexts[0]
    assert shared.verify_mode == ssl.CERT_REQUIRED and shared.check_hostname
    assert shared.cert_store_stats()["x509_ca"] > 100  # certifi's bundle, as Prefect loads it


def test_a_setting_gets_its_own_context_and_a_client_keeps_its_own_verify():
    from prefect.client.orchestration import PrefectClient, get_client
    from prefect.settings import PREFECT_API_TLS_INSECURE_SKIP_VERIFY, PREFECT_API_URL, temporary_settings

    import flows.pipeline  # noqa: F401

    verified = _context(get_client())
    with temporary_settings({PREFECT_API_TLS_INSECURE_SKIP_VERIFY: True}):
        insecure = _context(get_client())
        assert insecure is _context(get_client(sync_client=True))
    assert insecure is not verified
    assert insecure.verify_mode == ssl.CERT_NONE and not insecure.check_hostname
    own = ssl.create_default_context()
    client = PrefectClient(PREFECT_API_URL.value(), httpx_settings={"verify": own})
    assert _context(client) is own
