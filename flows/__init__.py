"""Definitions and the one flow: loading and validating definitions, the `@flow`, its hooks, Prefect plumbing."""
