"""The analytic tests use the suite's shared fixtures (tests/helpers.py)."""
from tests.helpers import paper_pair, random_mixture  # noqa: F401
