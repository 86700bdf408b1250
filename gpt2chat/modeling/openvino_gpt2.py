"""GPT-2 on OpenVINO: the graph built from a Keras-Hub backbone's weights, and a streaming generator over it.

Why OpenVINO: it installs as a wheel with no torch, hands each step's logits to Python (copy-biased decoding needs
them), keeps the key/value cache inside the runtime (stateful model) and runs int8 weights as compressed-weight
matmuls. Issue 14's table (GPT-2 124M, greedy, measured before this module existed): OpenVINO int8 58-70 tokens/s
vs CTranslate2 int8 44-58, Keras-Hub 19-31, transformers 16-21; llama.cpp (84-100) is built from source on
install (llama-cpp-python took 55 min on this busy machine, requirements-bench.txt), so every Space rebuild would
compile it. This module against every runtime: benchmarks/README.md.

The graph is written with the opset API straight from the Keras weights (no torch, no transformers, no export to
Hugging Face format): the language-model head runs on the last position only, the query/key/value projections
are one matmul, and each layer's cache is a runtime variable (``ReadValue -> Concat -> SDPA``, ``Assign``) held
by the stream's infer request, so no cache ever crosses into Python.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gpt2chat.modeling.generation import TokenStreamer
from gpt2chat.modeling.tokenizer import END_OF_TEXT_ID

WEIGHT_FORMATS = ("int8", "f32")
LAYER_NORM_EPSILON = 1e-5  # Keras-Hub GPT2Backbone's
INPUT_NAME = "input_ids"
BEAM_NAME = "beam_idx"
LOGITS_NAME = "logits"
# The key/value cache's precision per weight format. f32 weights keep an f32 cache: their tokens are Keras's.
# int8 weights already move a few tokens, so their cache is u8, the plugin's own default for LLMs: it reads a
# quarter of the bytes, `base` at a 400-token cache 34 vs 24 tokens/s (median of 3, load average 5).
CACHE_PRECISION = {"int8": "u8", "f32": "f32"}
# The Space's CPU hardware has 2 vCPU; the speeds in benchmarks/README.md were measured with 2 threads.
DEFAULT_THREADS = 2


def _quantize_rows(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per output row (matrix is (out, in)): int8 values and float32 scales (out, 1)."""
    scale = np.abs(matrix).max(axis=1, keepdims=True) / 127.0
    scale = np.where(scale == 0, 1.0, scale).astype(np.float32)
    return np.clip(np.round(matrix / scale), -127, 127).astype(np.int8), scale


class _Weights:
    """Constants of the graph: float32, or int8 rows with a float32 scale (``int8 -> Convert -> Multiply``), the
    pattern the CPU plugin runs as a compressed-weight matmul or gather without expanding it to float."""

    def __init__(self, weights: str):
        if weights not in WEIGHT_FORMATS:
            raise ValueError(f"unknown weights {weights!r}; choose one of {', '.join(WEIGHT_FORMATS)}")
        self.weights = weights

    def rows(self, matrix: np.ndarray, name: str):
        """A (out, in) matrix for ``MatMul(x, W, transpose_b=True)`` or a row ``Gather``."""
        import openvino.opset13 as ops

        matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        if self.weights == "f32":
            return ops.constant(matrix, name=name)
        values, scale = _quantize_rows(matrix)
        as_float = ops.convert(ops.constant(values, name=name), "f32")
        return ops.multiply(as_float, ops.constant(scale, name=f"{name}/scale"))

    @staticmethod
    def vector(values: np.ndarray, name: str):
        import openvino.opset13 as ops

        return ops.constant(np.asarray(values, dtype=np.float32), name=name)


def _layer_norm(x, layer, w: _Weights, name: str):
    import openvino.opset13 as ops

    normalized = ops.mvn(x, ops.constant(np.array([-1], np.int64)), True, LAYER_NORM_EPSILON, "inside_sqrt")
    return ops.add(ops.multiply(normalized, w.vector(_numpy(layer.gamma), f"{name}/gamma")),
                   w.vector(_numpy(layer.beta), f"{name}/beta"))


def _dense(x, kernel: np.ndarray, bias: np.ndarray, w: _Weights, name: str):
    """x @ kernel + bias for a Keras kernel (in, out)."""
    import openvino.opset13 as ops

    product = ops.matmul(x, w.rows(np.asarray(kernel).T, name), False, True)
    return ops.add(product, w.vector(bias, f"{name}/bias"))


def _numpy(variable) -> np.ndarray:
    from keras import ops

    return np.asarray(ops.convert_to_numpy(variable), dtype=np.float32)


def build_model(backbone, weights: str = "int8"):
    """An ``openvino.Model`` of a Keras-Hub ``GPT2Backbone``: input ``input_ids`` (1, new tokens), output
    ``logits`` (1, vocabulary) of the last new token; the key/value cache is the infer request's state."""
    import openvino as ov
    import openvino.opset13 as ops
    import openvino.opset6 as opset6
    from openvino.op.util import Variable, VariableInfo

    w = _Weights(weights)
    heads, hidden = backbone.num_heads, backbone.hidden_dim
    head_dim = hidden // heads
    i64 = lambda *values: ops.constant(np.array(values, dtype=np.int64))  # noqa: E731
    scalar = lambda value: ops.constant(np.int64(value))  # noqa: E731

    input_ids = ops.parameter([1, -1], ov.Type.i64, name=INPUT_NAME)
    # Always [0] (one sequence); the CPU plugin only fuses cache + attention (ScaledDotProductAttentionWithKVCache:
    # no cache copy per step) when the cache is read through a Gather on a beam index, as in beam search. Without
    # it the attention was decomposed and the cache concatenated anew each step: 12 ms vs 0.5 ms a `tiny` step.
    beam_index = ops.parameter([-1], ov.Type.i32, name=BEAM_NAME)
    # The cache: one runtime variable per layer and key/value, (1, heads, positions, head_dim), empty at first.
    empty = ops.broadcast(ops.constant(np.float32(0)), i64(1, heads, 0, head_dim))
    variables, pasts = [], []
    for index in range(backbone.num_layers):
        for part in ("key", "value"):
            info = VariableInfo()
            info.variable_id, info.data_type = f"cache.{index}.{part}", ov.Type.f32
            info.data_shape = ov.PartialShape([1, heads, -1, head_dim])
            variables.append(Variable(info))
            pasts.append(ops.read_value(empty, variables[-1]))
    # Positions continue after what the cache holds: its length is the number of tokens already seen.
    past_length = ops.gather(ops.shape_of(pasts[0], "i64"), scalar(2), scalar(0))
    new_length = ops.gather(ops.shape_of(input_ids, "i64"), scalar(1), scalar(0))
    total_length = ops.add(past_length, new_length)
    positions = ops.range(past_length, total_length, scalar(1), "i64")
    # A query at position p sees keys 0..p: an explicit mask, as the prompt's queries start after the cache.
    key_positions = ops.range(scalar(0), total_length, scalar(1), "i64")
    future = ops.greater(ops.unsqueeze(key_positions, i64(0)), ops.unsqueeze(positions, i64(1)))
    mask = ops.select(future, ops.constant(np.float32(-np.inf)), ops.constant(np.float32(0)))

    token_table = w.rows(_numpy(backbone.token_embedding.embeddings), "token_embedding")
    x = ops.gather(token_table, input_ids, scalar(0))
    position_table = w.vector(_numpy(backbone.position_embedding.position_embeddings), "position_embedding")
    x = ops.add(x, ops.unsqueeze(ops.gather(position_table, positions, scalar(0)), i64(0)))

    presents = []
    split_heads = i64(0, 0, heads, head_dim)
    for index, layer in enumerate(backbone.transformer_layers):
        name = f"layer{index}"
        attention = layer._self_attention_layer
        normed = _layer_norm(x, layer._self_attention_layer_norm, w, f"{name}/attention_norm")
        qkv_kernel = np.concatenate([_numpy(d.kernel).reshape(hidden, hidden)
                                     for d in (attention.query_dense, attention.key_dense, attention.value_dense)],
                                    axis=1)
        qkv_bias = np.concatenate([_numpy(d.bias).reshape(hidden)
                                   for d in (attention.query_dense, attention.key_dense, attention.value_dense)])
        qkv = _dense(normed, qkv_kernel, qkv_bias, w, f"{name}/qkv")
        query, key, value = (ops.transpose(ops.reshape(part, split_heads, True), i64(0, 2, 1, 3))
                             for part in ops.split(qkv, scalar(2), 3).outputs())
        key = ops.concat([ops.gather(pasts[2 * index], beam_index, scalar(0)), key], 2)
        value = ops.concat([ops.gather(pasts[2 * index + 1], beam_index, scalar(0)), value], 2)
        presents += [key, value]
        context = ops.scaled_dot_product_attention(query, key, value, mask, causal=False)
        context = ops.reshape(ops.transpose(context, i64(0, 2, 1, 3)), i64(0, 0, hidden), True)
        output = attention.output_dense
        x = ops.add(x, _dense(context, _numpy(output.kernel).reshape(hidden, hidden), _numpy(output.bias), w,
                              f"{name}/attention_output"))
        normed = _layer_norm(x, layer._feedforward_layer_norm, w, f"{name}/feedforward_norm")
        inner = layer._feedforward_intermediate_dense
        h = ops.gelu(_dense(normed, _numpy(inner.kernel), _numpy(inner.bias), w, f"{name}/feedforward_in"),
                     "tanh")  # Keras-Hub GPT-2 uses the tanh approximation
        outer = layer._feedforward_output_dense
        x = ops.add(x, _dense(h, _numpy(outer.kernel), _numpy(outer.bias), w, f"{name}/feedforward_out"))

    last = ops.gather(x, ops.subtract(new_length, scalar(1)), scalar(1))  # the head on the last position only
    last = _layer_norm(last, backbone.layer_norm, w, "final_norm")
    logits = ops.matmul(last, token_table, False, True)  # tied: the token embedding is the head
    result = ops.result(logits, name=LOGITS_NAME)
    result.output(0).get_tensor().set_names({LOGITS_NAME})
    assigns = [opset6.assign(present, variable) for present, variable in zip(presents, variables)]
    return ov.Model([result], assigns, [input_ids, beam_index], "gpt2chat")


def compile_model(model_or_path, weights: str, threads: int = DEFAULT_THREADS):
    """Compile for the CPU: ``threads`` inference threads, one stream, latency first, float32 activations (the
    plugin would pick bf16 on AVX-512 BF16 CPUs) and the cache precision of ``weights`` (``CACHE_PRECISION``)."""
    import openvino as ov

    core = ov.Core()
    config = {
        "INFERENCE_NUM_THREADS": int(threads),
        "NUM_STREAMS": 1,
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": "f32",
        "KV_CACHE_PRECISION": CACHE_PRECISION[weights],
    }
    model = core.read_model(str(model_or_path)) if isinstance(model_or_path, (str, Path)) else model_or_path
    return core.compile_model(model, "CPU", config)


class OpenVINOGenerator(TokenStreamer):
    """The interface of ``gpt2chat.modeling.generation.StreamingGenerator`` over a compiled OpenVINO GPT-2."""

    def __init__(self, compiled_model, tokenizer, context_length: int, *, max_sequence_length: int):
        self.compiled_model = compiled_model
        self.tokenizer = tokenizer
        self.context_length = min(context_length or max_sequence_length, max_sequence_length)
        self._beam = np.zeros(1, dtype=np.int32)

    def _run(self, request, token_ids: list[int]):
        request.infer({INPUT_NAME: np.asarray([token_ids], dtype=np.int64), BEAM_NAME: self._beam},
                      share_inputs=True)
        logits = request.get_tensor(LOGITS_NAME).data  # a view: valid until this request's next infer
        return np.argmax(logits, axis=-1), logits, request

    def _first_logits(self, prompt_ids: list[int]):
        # One request per stream: its state is this stream's cache, so concurrent answers never share one.
        # Creating it costs what reset_state does (with a 50-token prefill on models/default, `small`: 20.1 vs
        # 19.9 ms, median of 15, load average 3.1).
        return self._run(self.compiled_model.create_infer_request(), prompt_ids)

    def _next_logits(self, token_id: int, position: int, request):
        return self._run(request, [token_id])

    def warm_up(self, prompt_lengths=None) -> float:
        """One prompt and a few steps, so the first user does not pay the plugin's first-shape set-up."""
        import time

        started = time.perf_counter()
        for length in sorted(set(prompt_lengths or (8, 400)))[:4]:
            *_, request = self._first_logits([END_OF_TEXT_ID] * min(length, self.context_length - 4))
            for position in range(3):
                self._next_logits(END_OF_TEXT_ID, position, request)
        return time.perf_counter() - started
