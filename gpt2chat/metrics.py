"""Scores shared by training, evaluation and the reports."""

from __future__ import annotations

import math


def perplexity(loss: float) -> float:
    """exp(mean cross-entropy in nats per token), capped so an untrained model's loss does not overflow."""
    return math.exp(min(loss, 50.0))
