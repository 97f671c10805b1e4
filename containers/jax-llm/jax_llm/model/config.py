"""The decoder's architecture as one typed config, with the presets the `preset` hyperparameter names.

Two families share one implementation (`model/gpt.py`): GPT-style (tiny, 125m, 350m, 1.3b: full
multi-head attention, GELU MLP, tied embeddings, layers unrolled) and Llama-2-style (3b, 7b, 13b and
7b-gqa: grouped-query attention, SwiGLU MLP, untied output embedding, layers scanned so that compile
time does not grow with depth). Every field added for the second family defaults to the first's
behaviour, so an exported `config.json` written before those fields existed still loads.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax

DType = Literal["float32", "bfloat16"]
Attention = Literal["auto", "cudnn", "xla"]
Mlp = Literal["gelu", "swiglu"]


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
    n_kv_heads: int | None = None  # key/value heads (grouped-query attention); None: n_heads (plain MHA)
    mlp: Mlp = "gelu"  # "gelu": x -> W2 gelu(W1 x); "swiglu": x -> W2 (silu(Wg x) * Wu x) (Llama)
    tie_embeddings: bool = True  # output projection = the input embedding's transpose; False: own matrix
    scan_layers: bool = False  # one block compiled and scanned over stacked weights [n_layers, ...]
    # Column groups of the fused q/k/v projection: with G groups its output is G blocks of [q, k, v], each
    # block n_heads / G query heads and kv_heads / G key/value heads, so that G tensor-parallel devices each
    # hold whole heads. 1 (training, exports): [all q, all k, all v]. Set only by a server (`group_qkv_columns`).
    qkv_groups: int = 1

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if (self.d_model // self.n_heads) % 2:
            raise ValueError("head_dim must be even for rotary embeddings")
        if self.n_kv_heads is not None and (self.n_kv_heads < 1 or self.n_heads % self.n_kv_heads):
            raise ValueError(f"n_kv_heads={self.n_kv_heads} must divide n_heads={self.n_heads}")
        if self.qkv_groups < 1 or self.n_heads % self.qkv_groups or self.kv_heads % self.qkv_groups:
            raise ValueError(
                f"qkv_groups={self.qkv_groups} must divide n_heads={self.n_heads} and kv_heads={self.kv_heads}"
            )
        if self.mlp not in ("gelu", "swiglu"):
            raise ValueError(f"mlp={self.mlp!r}: expected 'gelu' or 'swiglu'")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:
        """Key/value heads: each serves n_heads / kv_heads query heads (1 query head each without GQA)."""
        return self.n_kv_heads or self.n_heads

    def attention_implementation(self) -> Literal["cudnn", "xla"]:
        """Resolves "auto": `jax.nn.dot_product_attention` uses XLA unless cuDNN is asked for explicitly.

        cuDNN's fused attention takes only 16-bit inputs, so fp32 compute falls back to XLA.
        """
        if self.attention != "auto":
            return self.attention
        on_gpu = jax.default_backend() == "gpu"
        return "cudnn" if on_gpu and self.compute_dtype == "bfloat16" else "xla"

    def num_params(self) -> int:
        """Parameter count (tied input and output embeddings counted once)."""
        d, f = self.d_model, self.d_ff
        attention = 2 * d * d + 2 * d * self.kv_heads * self.head_dim  # q and o; k and v (fewer with GQA)
        mlp = (3 if self.mlp == "swiglu" else 2) * d * f  # gate, up and down; or in and out (no biases)
        per_layer = attention + mlp + 2 * d  # + two RMSNorm scales
        embeddings = self.vocab_size * d * (1 if self.tie_embeddings else 2)
        return embeddings + self.n_layers * per_layer + d  # + the final RMSNorm

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token: 6N for the matmuls plus the attention score/value term (PaLM, App. B)."""
        # Every parameter but the input embedding (a gather) is a matmul weight; the output projection
        # onto the vocabulary is a matmul too, tied or not.
        matmul_params = self.num_params() - (self.vocab_size * self.d_model if not self.tie_embeddings else 0)
        return 6 * matmul_params + 12 * self.n_layers * self.d_model * seq_len

    @classmethod
    def preset(cls, name: str, **overrides) -> ModelConfig:
        """Named sizes: `tiny` for tests, GPT-3-shaped 125m, 350m and 1.3b, Llama-2-shaped 3b, 7b, 13b."""
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
# Llama-2-style: SwiGLU with d_ff about 8/3 d_model, untied output embedding, scanned layers. 7b and 13b
# have Llama-2's published shapes; 3b has OpenLLaMA-3B's; 7b-gqa is 7b with 8 key/value heads (as
# Llama-2-70B groups its heads), which cuts the KV cache and k/v weights by 4x.
_LLAMA = dict(mlp="swiglu", tie_embeddings=False, scan_layers=True, max_seq_len=4096)
PRESETS.update(
    {
        "3b": ModelConfig(d_model=3200, n_layers=26, n_heads=32, d_ff=8640, **_LLAMA),
        "7b": ModelConfig(d_model=4096, n_layers=32, n_heads=32, d_ff=11008, **_LLAMA),
        "7b-gqa": ModelConfig(d_model=4096, n_layers=32, n_heads=32, n_kv_heads=8, d_ff=11008, **_LLAMA),
        "13b": ModelConfig(d_model=5120, n_layers=40, n_heads=40, d_ff=13824, **_LLAMA),
        # A Llama-shaped config small enough for CPU tests: GQA (2 query heads per kv head), SwiGLU, untied.
        "tiny-llama": ModelConfig(
            vocab_size=512,
            d_model=64,
            n_layers=3,
            n_heads=4,
            n_kv_heads=2,
            d_ff=192,
            max_seq_len=128,
            mlp="swiglu",
            tie_embeddings=False,
            scan_layers=True,
        ),
    }
)
