"""Question understanding and retrieval: foci, question types, BM25, re-ranking, entailment."""
