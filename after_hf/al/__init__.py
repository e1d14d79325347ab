"""Active learning: query strategies, pool scoring, the oracle, the resumable loop."""
