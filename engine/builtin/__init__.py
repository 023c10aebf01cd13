"""The built-in model: a small flow-matching super-resolver that ships with Uprez."""
