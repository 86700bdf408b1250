"""Evaluation and what is published: comparison report, metrics, LLM judge, EDA, slides."""
