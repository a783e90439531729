"""Helpers shared by the test modules: ports, waits, real Prefect servers, and each theme's sample data.

`ports` and `waiting` are generic; `prefect_server` runs `prefect server start`;
`alert_fuzz`, `notify_cases`, `provider_fakes` and `intelligence_inputs` hold what the
split ingest, notify and intelligence test modules share. Fixtures live in conftest.py.
"""
