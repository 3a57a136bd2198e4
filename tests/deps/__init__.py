"""Helpers for tests/test_deps.py: tiny wheels and sdists built in the test, no network."""
