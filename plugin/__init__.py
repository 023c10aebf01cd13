"""Uprez editor bridges and the shared client they ship with (standard library only)."""
