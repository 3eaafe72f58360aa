"""`MuxBertConfig`: a `BertConfig` plus the multiplexing settings and the compacted structure.

Everything that shapes a saved model lives here, so `save_pretrained` / `from_pretrained` restore
it exactly: the multiplexing width N, which multiplexer and demultiplexer, and, after CoFi
compaction, the surviving heads, FFN dimensions and hidden size of every layer.
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import BertConfig


@strict
class MuxBertConfig(BertConfig):
    r"""Configuration of a data-multiplexed BERT classifier (`MuxBertForSequenceClassification`).

    Args (besides those of `BertConfig`):
        mux_width: N, the number of inputs that share one encoder pass (1 = an ordinary BERT).
        multiplexer: `gaussian_hadamard`, `binary_hadamard` or `learned`.
        demultiplexer: `index_pos`, `index` or `mlp`.
        demux_layers: Linear-GELU-LayerNorm blocks in the demultiplexer's MLP (>= 1).
        readout: what the classifier reads at N > 1: `cls` (each instance demultiplexed at position
            0) or `instance_mean` (demultiplexed at every position, averaged over the instance's
            own real tokens).
        mux_pooler: whether BERT's pooler (dense + tanh) runs on each demultiplexed state at N > 1
            before the classifier (the reference implementations have none at N > 1).
        demux_blocks: `plain` (Linear-GELU-LayerNorm blocks) or `residual`, the MUX-PLM / PruMUX
            classification demultiplexer: GELU after the first Linear, residual Linear-GELU
            blocks, then a residual Linear-GELU-LayerNorm block (`demux_layers` Linears in both).
        mux_embed_pass: whether the mixture goes through the embedding layer again (position and
            token-type addition, LayerNorm, dropout) before layer 1, as MUX-PLM / PruMUX do.
        mux_mask_padding: whether an instance's padding is zeroed before mixing and masked out of
            attention; MUX-PLM / PruMUX mix and attend every position (False).
        mux_token_types: whether instances are embedded with their token type ids at N > 1;
            MUX-PLM / PruMUX embed every token as type 0 (False).
        mux_norm: root-mean-square of the multiplexer's slot vectors (their L2 norm is
            `mux_norm * sqrt(hidden_size)`), so a multiplexed embedding keeps the scale of a plain one.
        mux_seed: seed of the fixed slot vectors, so the same config always gives the same vectors.
        retrieval_head: whether the model carries the token-retrieval head (warm-up, auxiliary loss).
        retrieval_ignore_ids: token ids never used as retrieval targets (padding, [CLS], [SEP], ...).
        compact_hidden_size: hidden size kept after pruning (None = `hidden_size`).
        compact_heads: kept attention heads per layer (0 = the attention block is skipped; None = all).
        compact_intermediate: kept FFN dimensions per layer (0 = the FFN block is skipped; None = all).

    The head size stays `hidden_size // num_attention_heads` of the original model when heads are
    removed, and the demultiplexer, pooler and classifier keep width `hidden_size`.
    """

    model_type = "muxbert"

    mux_width: int = 1
    multiplexer: str = "gaussian_hadamard"
    demultiplexer: str = "index_pos"
    demux_layers: int = 3
    readout: str = "cls"
    mux_pooler: bool = True
    demux_blocks: str = "plain"
    mux_embed_pass: bool = False
    mux_mask_padding: bool = True
    mux_token_types: bool = True
    mux_norm: float | int = 1.0
    mux_seed: int = 0
    retrieval_head: bool = False
    retrieval_ignore_ids: list[int] | None = None
    compact_hidden_size: int | None = None
    compact_heads: list[int] | None = None
    compact_intermediate: list[int] | None = None

    @property
    def head_size(self) -> int:
        """d_h: the size of one attention head (of the original, unpruned model)."""
        return self.hidden_size // self.num_attention_heads

    @property
    def encoder_hidden_size(self) -> int:
        """The hidden size inside the encoder: `compact_hidden_size` when compacted, else `hidden_size`."""
        return self.compact_hidden_size or self.hidden_size

    @property
    def is_compact(self) -> bool:
        """True when any `compact_*` field is set (the model has per-layer pruned shapes)."""
        return any(
            v is not None for v in (self.compact_hidden_size, self.compact_heads, self.compact_intermediate)
        )

    @classmethod
    def from_bert_config(cls, bert: BertConfig, **mux_kwargs) -> MuxBertConfig:
        """A `MuxBertConfig` with every BERT field of `bert` and the given multiplexing fields."""
        values = {k: v for k, v in bert.to_dict().items() if k not in ("model_type", "architectures")}
        values.update(mux_kwargs)
        known = set(cls.__dataclass_fields__) | {"id2label", "label2id", "num_labels"}
        return cls(**{k: v for k, v in values.items() if k in known})
