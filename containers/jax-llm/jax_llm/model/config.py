"""The GPT architecture as one typed config, with the presets the `preset` hyperparameter names."""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax

DType = Literal["float32", "bfloat16"]
Attention = Literal["auto", "cudnn", "xla"]


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Shape and numerics of the decoder. Stored in every checkpoint and exported model."""

    vocab_size: int = 32768  # tokenizer size rounded up to a multiple of 128 (tensor-core friendly)
    d_model: int = 768  # residual stream width
    n_layers: int = 12
    n_heads: int = 12  # head_dim = d_model // n_heads
    d_ff: int = 3072  # MLP hidden width (4 x d_model, as GPT-2/3)
    max_seq_len: int = 1024  # longest context the model is trained and served at
    rope_theta: float = 10_000.0  # rotary base frequency
    compute_dtype: DType = "float32"  # activations and matmuls; "bfloat16" on GPU
    param_dtype: DType = "float32"  # master weights stay fp32 so AdamW updates are not lost to rounding
    attention: Attention = "auto"  # "auto": cuDNN flash attention on GPU, XLA elsewhere
    remat: bool = False  # recompute each block's activations in the backward pass to save memory

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if (self.d_model // self.n_heads) % 2:
            raise ValueError("head_dim must be even for rotary embeddings")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def attention_implementation(self) -> Literal["cudnn", "xla"]:
        """Resolves "auto": `jax.nn.dot_product_attention` uses XLA unless cuDNN is asked for explicitly.

        cuDNN's fused attention takes only 16-bit inputs, so fp32 compute falls back to XLA.
        """
        if self.attention != "auto":
            return self.attention
        on_gpu = jax.default_backend() == "gpu"
        return "cudnn" if on_gpu and self.compute_dtype == "bfloat16" else "xla"

    def num_params(self) -> int:
        """Parameter count (input and output embeddings are tied, so counted once)."""
        d, f = self.d_model, self.d_ff
        per_layer = 4 * d * d + 2 * d * f + 2 * d  # q, k, v, o; MLP in and out (no biases); two RMSNorm scales
        return self.vocab_size * d + self.n_layers * per_layer + d  # + the final RMSNorm

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token: 6N for the matmuls plus the attention score/value term (PaLM, App. B)."""
        non_embedding = self.num_params() - self.vocab_size * self.d_model
        # The output projection onto the vocabulary is a matmul too, even though its weight is tied.
        matmul_params = non_embedding + self.vocab_size * self.d_model
        return 6 * matmul_params + 12 * self.n_layers * self.d_model * seq_len

    @classmethod
    def preset(cls, name: str, **overrides) -> "ModelConfig":
        """Named sizes: `tiny` for tests, then GPT-3-shaped 125m, 350m and 1.3b."""
        try:
            base = PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}") from None
        return dataclasses.replace(base, **overrides)


PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(vocab_size=512, d_model=64, n_layers=2, n_heads=4, d_ff=256, max_seq_len=128),
    "125m": ModelConfig(d_model=768, n_layers=12, n_heads=12, d_ff=3072, max_seq_len=1024),
    "350m": ModelConfig(d_model=1024, n_layers=24, n_heads=16, d_ff=4096, max_seq_len=1024),
    "1.3b": ModelConfig(d_model=2048, n_layers=24, n_heads=16, d_ff=8192, max_seq_len=2048),
}
