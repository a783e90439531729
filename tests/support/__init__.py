"""Helpers shared by the test modules: ports, real Prefect servers, their logs."""
