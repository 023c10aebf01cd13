"""Helpers for tests and demos: tiny random models built offline."""
