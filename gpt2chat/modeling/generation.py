"""Token-streaming generation for a Keras-Hub ``GPT2CausalLM`` with a key/value cache.

``GPT2CausalLM.generate`` returns only when the whole answer is done; a chat UI wants each token as it comes.
This decodes one token per call of a compiled step function. Shapes come from a few fixed buckets, so nothing
is recompiled between messages: one compiled prefill per prompt-length bucket and one compiled step per
cache-length bucket, each compiled the first time it is used (``warm_up`` compiles them ahead). Tokens are
picked greedily inside the compiled step, or sampled (top-k, top-p, temperature) on the host by ``Sampler``.

Why it is fast on CPU (see benchmarks/README.md for the measurements):

* positions are gathered (``PositionEmbedding(positions=...)``) instead of sliced at a dynamic start, because
  XLA on TensorFlow treats a slice's start as a compile-time constant and would compile the step again for
  every new position;
* the language-model head runs on the last prompt position only, not on the whole prefill bucket;
* XLA for narrow models, TensorFlow's plain graph (oneDNN kernels) for wide ones (``XLA_MAX_HIDDEN``);
* greedy decoding (``GreedySampler``) runs inside the compiled step, so a step hands back one int, not the
  logits, and no eager op runs between steps; sampling (``Sampler``, NumPy) and a ``logits_processor``
  (copy-biased decoding) run on the host on the step's logits;
* the cache is one tensor per layer that stays a backend tensor from step to step (never converted to NumPy),
  and it is only as long as the conversation so far needs (128, 256, 512, ... positions): each step copies
  and reads the whole cache, so a cache of the full context would cost a short answer far more than its
  weights' share of memory traffic.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from gpt2chat.modeling.tokenizer import END_OF_TEXT_ID

PREFILL_BUCKETS = (32, 64, 128, 256, 512, 1024)  # prompt lengths: one compiled prefill each, as used
CACHE_BUCKETS = (128, 256, 512, 1024)  # key/value cache lengths: one compiled step each, as used
# On CPU, XLA fuses the many small ops of a narrow model (the 256-wide `small`: 2x the tokens/s of the plain graph)
# but its matrix-vector products trail TensorFlow's oneDNN kernels on wide ones (the 768-wide `base`: the plain
# graph is faster and compiles in half the time). Measured in benchmarks/README.md.
XLA_MAX_HIDDEN = 512


# Rewrites one step's logits (vocabulary,) given the ids generated so far, e.g. gpt2chat.chat.copybias.CopyBias.
LogitsProcessor = Callable[[np.ndarray, Sequence[int]], np.ndarray]


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


class Sampler:
    """Top-k, then top-p (nucleus) sampling at a temperature, on the host in NumPy, with its own seeded generator.

    Keras-Hub's ``TopPSampler`` does the same with eager TensorFlow ops, but each one built per answer kept ~74 KB
    (its ``SeedGenerator``) for the life of the process: 73.6 MB per 1,000 answers, the app's slow memory creep
    (benchmarks/sampler_memory.py, benchmarks/memory_trace.py)."""

    def __init__(self, config: SamplingConfig):
        self.config = config
        self.rng = np.random.default_rng(config.seed)

    def __call__(self, logits: np.ndarray) -> int:
        config = self.config
        logits = np.asarray(logits, dtype=np.float64) / config.temperature
        k = min(config.top_k, logits.size) if config.top_k > 0 else logits.size
        top = np.argpartition(logits, -k)[-k:]
        top = top[np.argsort(logits[top])[::-1]]
        probabilities = np.exp(logits[top] - logits[top[0]])
        probabilities /= probabilities.sum()
        # Keep the most likely tokens up to and including the one whose cumulative probability reaches top_p.
        keep = int(np.searchsorted(np.cumsum(probabilities), config.top_p)) + 1
        probabilities = probabilities[:keep] / probabilities[:keep].sum()
        return int(top[self.rng.choice(probabilities.size, p=probabilities)])


class TokenStreamer:
    """The runtime-independent part of streaming: tokenizer, prompt budget, the pick of each token (greedy,
    sampled, logits processor) and the decoding loop. A runtime supplies ``tokenizer``, ``context_length`` and
    two hooks, ``_first_logits(prompt_ids)`` and ``_next_logits(token_id, position, state)``, each returning
    ``(greedy token (1,), logits (1, vocabulary), state)``: this Keras generator and the OpenVINO one
    (gpt2chat.modeling.openvino_gpt2) share everything else."""

    tokenizer = None
    context_length: int = 0
    end_token_id: int | None = END_OF_TEXT_ID  # None: never stop before max_new_tokens

    def _first_logits(self, prompt_ids: list[int]):
        raise NotImplementedError

    def _next_logits(self, token_id: int, position: int, state):
        raise NotImplementedError

    def warm_up(self, prompt_lengths: Iterable[int] | None = None) -> float:
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        return [int(i) for i in np.asarray(self.tokenizer(text)).reshape(-1)]

    def decode(self, token_ids: list[int]) -> str:
        if not token_ids:
            return ""
        return str(self.tokenizer.detokenize(np.asarray(token_ids, dtype=np.int32)))

    def prompt_budget(self, max_new_tokens: int) -> int:
        """How many prompt tokens fit beside ``max_new_tokens`` new ones."""
        return self.context_length - min(max_new_tokens, self.context_length // 2)

    @staticmethod
    def _next_id(token, logits, sampler: Sampler | None, logits_processor: LogitsProcessor | None,
                 generated: list[int]) -> int:
        """The step's pick: the runtime's greedy token, or greedy/sampled on the (processed) logits."""
        from keras import ops

        if logits_processor is None and sampler is None:  # the runtime already picked the greedy token
            return int(ops.convert_to_numpy(token)[0])
        logits = np.asarray(ops.convert_to_numpy(logits))[0]
        if logits_processor is not None:
            logits = logits_processor(logits, generated)
        return int(np.argmax(logits)) if sampler is None else sampler(logits)

    def stream_ids(
        self,
        prompt_ids: list[int],
        config: SamplingConfig,
        stats: GenerationStats | None = None,
        *,
        logits_processor: LogitsProcessor | None = None,
    ) -> Iterator[int]:
        """Yield new token ids until the end marker, ``max_new_tokens`` or a full context.

        ``logits_processor`` (e.g. ``gpt2chat.chat.copybias.CopyBias``) rewrites each step's logits, given the ids
        generated so far, before the greedy or sampled pick; the logits then come to the host at every step, so
        without one, greedy keeps the runtime's own pick."""
        stats = stats if stats is not None else GenerationStats()
        started = time.perf_counter()
        budget = self.prompt_budget(config.max_new_tokens)
        prompt_ids = list(prompt_ids)[-budget:] or [END_OF_TEXT_ID]  # keep the end: it holds the question
        length = len(prompt_ids)
        sampler = None if config.temperature <= 0 else Sampler(config)
        token, logits, state = self._first_logits(prompt_ids)
        stats.prompt_tokens = length
        max_new = min(config.max_new_tokens, self.context_length - length)
        generated: list[int] = []
        for position in range(length, length + max_new):
            next_id = self._next_id(token, logits, sampler, logits_processor, generated)
            if next_id == self.end_token_id:
                break
            generated.append(next_id)
            stats.new_tokens += 1
            if stats.new_tokens == 1:
                stats.seconds_to_first_token = time.perf_counter() - started
            yield next_id
            stats.seconds_total = time.perf_counter() - started
            if position + 1 >= self.context_length or stats.new_tokens >= max_new:
                break
            token, logits, state = self._next_logits(next_id, position, state)


class StreamingGenerator(TokenStreamer):
    """Keras-Hub ``GPT2CausalLM`` on its own backend (TensorFlow graphs on CPU)."""

    def __init__(self, causal_lm, context_length: int | None = None, *, jit_compile: bool | None = None):
        """``jit_compile``: XLA-compile the TensorFlow graphs; None picks by model width (see ``XLA_MAX_HIDDEN``)."""
        import keras_hub
        from keras import ops

        self.causal_lm = causal_lm
        self.tokenizer = causal_lm.preprocessor.tokenizer
        backbone = causal_lm.backbone
        if jit_compile is None:
            jit_compile = backbone.hidden_dim <= XLA_MAX_HIDDEN
        self.jit_compile = jit_compile
        self.context_length = min(context_length or backbone.max_sequence_length, backbone.max_sequence_length)
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

        # The tied language-model head (vocabulary x hidden) is the largest matrix-vector product of a step and
        # XLA's is faster than the plain graph's (which also transposes the embedding matrix first), so it is
        # always XLA-compiled, also inside a plain-graph step.
        head = _compile(head, True)

        def prefill(token_ids, last_index):
            heads, head_dim = backbone.num_heads, backbone.hidden_dim // backbone.num_heads
            shape = (1, 2, ops.shape(token_ids)[1], heads, head_dim)
            caches = tuple(ops.zeros(shape, dtype=causal_lm.compute_dtype) for _ in backbone.transformer_layers)
            hidden, caches = forward(token_ids, caches, ops.convert_to_tensor(0, "int32"))
            logits, token = head(ops.take(hidden, last_index[None], axis=1))
            return token, logits, caches

        def step(token_id, caches, index):
            hidden, caches = forward(token_id, caches, index)
            logits, token = head(hidden)
            return token, logits, caches

        self._prefill = _compile(prefill, jit_compile)
        self._step = _compile(step, jit_compile)

    def _prefill_bucket(self, length: int) -> int:
        """The prefill bucket (``PREFILL_BUCKETS``, at most the context) that holds a prompt of ``length``."""
        return min(next((b for b in PREFILL_BUCKETS if b >= length), self.context_length), self.context_length)

    def _cache_length(self, needed: int, current: int = 0) -> int:
        """The smallest cache bucket that holds ``needed`` positions (and no fewer than ``current``)."""
        buckets = [b for b in CACHE_BUCKETS if b < self.context_length] + [self.context_length]
        return next(b for b in buckets if b >= max(needed, current))

    @staticmethod
    def _grow(caches, length: int):
        """Pad each layer's cache (1, 2, positions, heads, head_dim) with empty positions up to ``length``."""
        from keras import ops

        extra = length - int(ops.shape(caches[0])[2])
        if extra <= 0:
            return caches
        return tuple(ops.pad(c, [[0, 0], [0, 0], [0, extra], [0, 0], [0, 0]]) for c in caches)

    def warm_up(self, prompt_lengths: Iterable[int] | None = None) -> float:
        """Compile ahead what a conversation will use, so that no user waits for a compilation; returns seconds.

        With XLA: the step for every cache bucket and the prefill for the buckets that hold ``prompt_lengths``
        (default: every bucket). Without XLA one graph serves every shape once traced for two of them."""
        from keras import ops

        started = time.perf_counter()
        limit = self.context_length
        prefill_buckets = sorted({min(b, limit) for b in PREFILL_BUCKETS})
        if prompt_lengths is not None:
            prefill_buckets = sorted({self._prefill_bucket(n) for n in prompt_lengths})
        cache_lengths = sorted({self._cache_length(b) for b in (*CACHE_BUCKETS, limit) if b <= limit})
        if not self.jit_compile:  # the second shape makes TensorFlow trace a graph for any shape
            prefill_buckets, cache_lengths = prefill_buckets[:2], cache_lengths[:2]
        caches = None
        for bucket in prefill_buckets:
            _, _, caches = self._prefill(np.zeros((1, bucket), dtype=np.int32), np.int32(0))
        for length in cache_lengths:
            caches = tuple(ops.zeros((1, 2, length, *ops.shape(c)[3:]), dtype=c.dtype) for c in caches)
            self._step(np.zeros((1, 1), dtype=np.int32), caches, np.int32(0))
        return time.perf_counter() - started

    def _first_logits(self, prompt_ids: list[int]):
        length = len(prompt_ids)
        padded = np.zeros((1, self._prefill_bucket(length)), dtype=np.int32)
        padded[0, :length] = prompt_ids
        return self._prefill(padded, np.int32(length - 1))

    def _next_logits(self, token_id: int, position: int, caches):
        from keras import ops

        # The cache grows by buckets as the answer does: a short answer never reads or copies a long cache.
        caches = self._grow(caches, self._cache_length(position + 1, int(ops.shape(caches[0])[2])))
        return self._step(np.array([[token_id]], dtype=np.int32), caches, np.int32(position))
