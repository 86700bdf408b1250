"""GPT-2 causal LMs: a Keras-Hub preset (online name or local directory) or a fresh model of a named size.

Presets are data on disk: ``save_to_preset(dir)`` writes one and ``load_preset(dir)`` reads it back through the
same ``GPT2CausalLM.from_preset`` call that loads ``gpt2_base_en`` for online users.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from gpt2chat.errors import CommandError
from gpt2chat.modeling.tokenizer import VOCABULARY_SIZE, gpt2_tokenizer


@dataclasses.dataclass(frozen=True)
class GPT2Size:
    num_layers: int
    num_heads: int
    hidden_dim: int
    intermediate_dim: int
    max_sequence_length: int


# `base` is the 124M layout of OpenAI's smallest GPT-2; `small` is sized to train usefully on 2 CPU cores.
SIZES = {
    "tiny": GPT2Size(num_layers=2, num_heads=2, hidden_dim=64, intermediate_dim=256, max_sequence_length=256),
    "small": GPT2Size(num_layers=4, num_heads=4, hidden_dim=256, intermediate_dim=1024, max_sequence_length=512),
    "base": GPT2Size(num_layers=12, num_heads=12, hidden_dim=768, intermediate_dim=3072, max_sequence_length=1024),
}


def gpt2_layout_map(device_mesh):
    """A ``keras.distribution.LayoutMap`` that splits every GPT-2 weight matrix over ``device_mesh``'s "model" axis
    (Megatron style: attention by its head dimension, the feed-forward by its inner width, the token embedding by
    its width) and leaves norms, position embeddings and LoRA adapters whole. It splits dimensions that every
    GPT-2 size can divide by 2, 4 or 8: head_dim is 64 in each, whereas gpt2_extra_large_en has 25 heads and the
    vocabulary 50,257 ids. JAX backend only (see gpt2chat.modeling.distribute)."""
    import keras

    layout = keras.distribution.LayoutMap(device_mesh)  # keys are regular expressions matched to whole paths
    layout[r".*token_embedding/embeddings"] = (None, "model")
    layout[r".*self_attention/(query|key|value)/kernel"] = (None, None, "model")  # (hidden, heads, head_dim)
    layout[r".*self_attention/(query|key|value)/bias"] = (None, "model")
    layout[r".*self_attention/attention_output/kernel"] = (None, "model", None)  # (heads, head_dim, hidden)
    layout[r".*feedforward_intermediate_dense/kernel"] = (None, "model")
    layout[r".*feedforward_intermediate_dense/bias"] = ("model",)
    layout[r".*feedforward_output_dense/kernel"] = ("model", None)
    return layout


class ModelUnavailable(RuntimeError, CommandError):
    """A preset that cannot be loaded (not downloadable offline, or not a preset directory)."""


def build_causal_lm(size: str, sequence_length: int, *, dropout: float = 0.0, dtype=None):
    """A randomly initialised GPT-2 of a named size, with the real GPT-2 tokenizer."""
    import keras_hub

    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")
    layout = SIZES[size]
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=VOCABULARY_SIZE, dropout=dropout, dtype=dtype, **dataclasses.asdict(layout)
    )
    preprocessor = keras_hub.models.GPT2CausalLMPreprocessor(
        tokenizer=gpt2_tokenizer(), sequence_length=min(sequence_length, layout.max_sequence_length)
    )
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=preprocessor)


def load_preset(name_or_dir: str | Path, *, dtype=None):
    """``GPT2CausalLM.from_preset`` for a Keras-Hub preset name (needs network) or a local preset directory."""
    import keras_hub

    source = str(name_or_dir)
    is_local = Path(source).expanduser().exists()
    if is_local and not (Path(source) / "config.json").is_file():
        raise ModelUnavailable(f"{source} is not a Keras-Hub preset directory (no config.json)")
    if not is_local and "://" not in source and source not in keras_hub.models.GPT2CausalLM.presets:
        raise ModelUnavailable(
            f"{source} does not exist: it is neither a local preset directory nor a Keras-Hub preset name "
            f"({', '.join(keras_hub.models.GPT2CausalLM.presets)}, or an hf:// or kaggle:// handle)"
        )
    try:
        return keras_hub.models.GPT2CausalLM.from_preset(
            str(Path(source).expanduser()) if is_local else source, dtype=dtype
        )
    except Exception as error:  # network, hub and file errors all mean the same thing to the user
        if is_local:
            raise ModelUnavailable(f"could not load the preset in {source}: {error}") from error
        raise ModelUnavailable(
            f"could not download preset {source!r} ({type(error).__name__}); "
            "pass a local preset directory or train with --from-scratch"
        ) from error
