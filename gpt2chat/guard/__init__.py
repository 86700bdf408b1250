"""What reads a message first: PII masking (mask), then emergencies and boundaries (safety)."""
