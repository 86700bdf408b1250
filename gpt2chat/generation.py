"""Token-streaming generation for a Keras-Hub ``GPT2CausalLM`` with a key/value cache.

``GPT2CausalLM.generate`` returns only when the whole answer is done; a chat UI wants each token as it comes.
This decodes one token per call of a compiled step function over a cache of fixed length, so shapes never
change and nothing is recompiled between messages: one prefill function per prompt-length bucket (prompts
longer than the largest bucket are fed through it in chunks), one step function. Tokens are picked by
Keras-Hub samplers (greedy, or top-p with top-k and temperature).

Why it is fast on CPU (see benchmarks/README.md for the measurements):

* positions are gathered (``PositionEmbedding(positions=...)``) instead of sliced at a dynamic start, because
  XLA on TensorFlow treats a slice's start as a compile-time constant and would compile the step again for
  every new position;
* the language-model head runs on the last prompt position only, not on the whole prefill bucket;
* greedy decoding (``GreedySampler``) runs inside the compiled step, so a step hands back one int, not the
  logits, and no eager op runs between steps; the sampling samplers run eagerly on the step's logits;
* the cache is one tensor per layer that stays a backend tensor from step to step (never converted to NumPy).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Iterator

import numpy as np

from gpt2chat.tokenizer import END_OF_TEXT_ID

PREFILL_BUCKETS = (32, 64, 128)  # longer prompts run through the largest bucket in chunks


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    max_new_tokens: int = 160
    temperature: float = 0.7  # 0 means greedy decoding
    top_p: float = 0.9
    top_k: int = 50
    seed: int | None = None


@dataclasses.dataclass
class GenerationStats:
    prompt_tokens: int = 0
    new_tokens: int = 0
    seconds_to_first_token: float = 0.0
    seconds_total: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        decode_seconds = self.seconds_total - self.seconds_to_first_token
        return (self.new_tokens - 1) / decode_seconds if self.new_tokens > 1 and decode_seconds > 0 else 0.0


def _compile(function: Callable, jit_compile: bool = True) -> Callable:
    """Graph-compile on TensorFlow (the CPU serving backend); other backends run the same Keras ops eagerly."""
    import keras

    if keras.config.backend() == "tensorflow":
        import tensorflow as tf

        return tf.function(function, jit_compile=jit_compile, reduce_retracing=True)
    return function


def make_sampler(config: SamplingConfig):
    import keras_hub

    if config.temperature <= 0:
        return keras_hub.samplers.GreedySampler()
    return keras_hub.samplers.TopPSampler(
        p=config.top_p, k=config.top_k, seed=config.seed, temperature=config.temperature
    )


class StreamingGenerator:
    def __init__(self, causal_lm, context_length: int | None = None, *, jit_compile: bool = True):
        import keras_hub
        from keras import ops

        self.causal_lm = causal_lm
        self.tokenizer = causal_lm.preprocessor.tokenizer
        backbone = causal_lm.backbone
        self.context_length = min(context_length or backbone.max_sequence_length, backbone.max_sequence_length)
        self.end_token_id: int | None = END_OF_TEXT_ID  # None: never stop before max_new_tokens
        self._layer_cache_shape = (
            1, 2, self.context_length, backbone.num_heads, backbone.hidden_dim // backbone.num_heads,
        )
        self._cache_dtype = causal_lm.compute_dtype
        greedy = keras_hub.samplers.GreedySampler()

        def forward(token_ids, caches, start):
            """``GPT2CausalLM.call_with_cache`` over per-layer caches, with gathered positions; hidden states."""
            tokens = backbone.token_embedding(token_ids)
            positions = start + ops.arange(ops.shape(token_ids)[1], dtype="int32")
            x = backbone.embeddings_add((tokens, backbone.position_embedding(tokens, positions=positions)))
            new_caches = []
            for layer, cache in zip(backbone.transformer_layers, caches):
                x, cache = layer(x, self_attention_cache=cache, self_attention_cache_update_index=start)
                new_caches.append(cache)
            return x, tuple(new_caches)

        def head(hidden):
            """Logits (1, vocabulary) in float32 and the greedy token (1,) for hidden states (1, 1, hidden)."""
            logits = backbone.token_embedding(backbone.layer_norm(hidden), reverse=True)[:, 0, :]
            logits = ops.cast(logits, "float32")
            return logits, ops.cast(greedy.get_next_token(logits), "int32")

        def prefill(token_ids, caches, start, last_index):
            hidden, caches = forward(token_ids, caches, start)
            logits, token = head(ops.take(hidden, last_index[None], axis=1))
            return token, logits, caches

        def step(token_id, caches, index):
            hidden, caches = forward(token_id, caches, index)
            logits, token = head(hidden)
            return token, logits, caches

        self._prefill = _compile(prefill, jit_compile)
        self._step = _compile(step, jit_compile)

    def _empty_cache(self):
        from keras import ops

        return tuple(
            ops.zeros(self._layer_cache_shape, dtype=self._cache_dtype)
            for _ in range(self.causal_lm.backbone.num_layers)
        )

    def encode(self, text: str) -> list[int]:
        return [int(i) for i in np.asarray(self.tokenizer(text)).reshape(-1)]

    def decode(self, token_ids: list[int]) -> str:
        if not token_ids:
            return ""
        return str(self.tokenizer.detokenize(np.asarray(token_ids, dtype=np.int32)))

    def prompt_budget(self, max_new_tokens: int) -> int:
        """How many prompt tokens fit beside ``max_new_tokens`` new ones."""
        return self.context_length - min(max_new_tokens, self.context_length // 2)

    def _run_prefill(self, prompt_ids: list[int]):
        """Feed the prompt through the smallest bucket that holds it, or in chunks of the largest one."""
        length = len(prompt_ids)
        largest = min(PREFILL_BUCKETS[-1], self.context_length)
        caches = self._empty_cache()
        start = 0
        while True:
            rest = length - start
            bucket = min(next((b for b in PREFILL_BUCKETS if b >= rest), largest), largest)
            # The last chunk must fit in the cache: shift it back over tokens already fed (same values rewritten).
            start = min(start, self.context_length - bucket) if rest <= bucket else start
            chunk = np.zeros((1, bucket), dtype=np.int32)
            piece = prompt_ids[start : start + bucket]
            chunk[0, : len(piece)] = piece
            last = min(length - start, bucket) - 1
            token, logits, caches = self._prefill(chunk, caches, np.int32(start), np.int32(last))
            if start + bucket >= length:
                return token, logits, caches
            start += bucket

    def stream_ids(
        self, prompt_ids: list[int], config: SamplingConfig, stats: GenerationStats | None = None
    ) -> Iterator[int]:
        """Yield new token ids until the end marker, ``max_new_tokens`` or a full context."""
        from keras import ops

        stats = stats if stats is not None else GenerationStats()
        started = time.perf_counter()
        budget = self.prompt_budget(config.max_new_tokens)
        prompt_ids = list(prompt_ids)[-budget:] or [END_OF_TEXT_ID]  # keep the end: it holds the question
        length = len(prompt_ids)
        sampler = None if config.temperature <= 0 else make_sampler(config)
        token, logits, caches = self._run_prefill(prompt_ids)
        stats.prompt_tokens = length
        max_new = min(config.max_new_tokens, self.context_length - length)
        for position in range(length, length + max_new):
            if sampler is None:  # greedy: GreedySampler already ran inside the compiled function
                next_id = int(ops.convert_to_numpy(token)[0])
            else:
                next_id = int(ops.convert_to_numpy(sampler.get_next_token(sampler.compute_probabilities(logits)))[0])
            if next_id == self.end_token_id:
                break
            stats.new_tokens += 1
            if stats.new_tokens == 1:
                stats.seconds_to_first_token = time.perf_counter() - started
            yield next_id
            stats.seconds_total = time.perf_counter() - started
            if position + 1 >= self.context_length or stats.new_tokens >= max_new:
                break
            token, logits, caches = self._step(np.array([[next_id]], dtype=np.int32), caches, np.int32(position))

    def stream_text(
        self, prompt: str, config: SamplingConfig, stats: GenerationStats | None = None
    ) -> Iterator[str]:
        """Yield the growing decoded continuation of ``prompt`` after each new token."""
        generated: list[int] = []
        for token in self.stream_ids(self.encode(prompt), config, stats):
            generated.append(token)
            yield self.decode(generated)
