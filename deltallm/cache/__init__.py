"""The response cache (SPEC §10): request keys and controls (policy), local and Redis stores (stores)."""
