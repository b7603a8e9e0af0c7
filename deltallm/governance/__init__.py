"""Governance: key rate limits and budgets, token counting, prices, and the usage log."""
