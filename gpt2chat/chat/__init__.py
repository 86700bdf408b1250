"""The chat engine: prompt -> generate (copy bias) -> verify (grounding) -> reply, follow-ups."""
