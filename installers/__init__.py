"""One-command set-up of Uprez: engine environment, editor bridges, settings (standard library only, Python 3.8+)."""
