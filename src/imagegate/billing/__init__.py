"""Money: the two-phase ledger (hold, then settle or release)."""
