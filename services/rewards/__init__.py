"""The rewards service: an exactly-once, hash-chained points ledger, versioned
reward rules, tiers earned by contribution (or granted), the catalogue and
redemption, and the leaderboard."""
