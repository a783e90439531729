"""Definitions and the one flow: loading and validating them, the `@flow`, its hooks, Prefect plumbing."""
