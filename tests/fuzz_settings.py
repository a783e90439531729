"""Hypothesis settings of the fuzz tests: 10,000 cases in the `slow` runs, 300 in the quick ones."""

from hypothesis import HealthCheck, settings

MANY = settings(
    max_examples=10_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    database=None,
)
FEW = settings(MANY, max_examples=300)
