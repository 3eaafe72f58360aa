"""`MuxBertForSequenceClassification`: N inputs share one pass of transformers' `BertModel`.

    embeddings (per instance) -> multiplexer -> encoder (once) -> demultiplexer -> pooler -> classifier

At N = 1 there is no multiplexer or demultiplexer and the computation is exactly
`BertForSequenceClassification`'s. Inputs are always [B, N, T] (a [B, T] tensor is accepted at
N = 1); logits are [B, N, num_labels]. See MECHANICS.md section 1 and the architecture contract.

For pruning: every tensor entering the encoder has passed `bert.embeddings` (and so its
LayerNorm), and the model calls `bert.embeddings`, `bert.encoder.layer[i]` and `bert.pooler.dense`
as modules, so forward hooks on them see every step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers import BertModel
from transformers import initialization as init
from transformers.masking_utils import create_bidirectional_mask
from transformers.models.bert.modeling_bert import BertPreTrainedModel
from transformers.utils import ModelOutput

from autoprumux.models.config import MuxBertConfig
from autoprumux.models.demultiplexer import Demultiplexer, _KeyedDemultiplexer, build_demultiplexer
from autoprumux.models.multiplexer import Multiplexer
from autoprumux.models.shapes import compact_bert_


@dataclass
class MuxClassifierOutput(ModelOutput):
    """Output of `MuxBertForSequenceClassification.forward`.

    loss: mean cross-entropy over the valid instances (when labels are given).
    logits: [B, N, num_labels].
    hidden_states: encoder input and every layer's output, each [B, T', d_enc] (when asked).
    retrieval_loss: mean token-retrieval cross-entropy over the scored positions (when asked).
    retrieval_logits: [M, vocab] for the M scored positions; retrieval_labels: their tokens [M].
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    retrieval_loss: torch.Tensor | None = None
    retrieval_logits: torch.Tensor | None = None
    retrieval_labels: torch.Tensor | None = None


class RetrievalHead(nn.Module):
    """Token-retrieval head: Linear-GELU-LayerNorm, then a decoder onto the vocabulary."""

    def __init__(self, hidden_size: int, vocab_size: int, eps: float):
        super().__init__()
        self.transform = nn.Sequential(
            nn.Linear(hidden_size, hidden_size), nn.GELU(), nn.LayerNorm(hidden_size, eps=eps)
        )
        self.decoder = nn.Linear(hidden_size, vocab_size)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(states))


class MuxBertForSequenceClassification(BertPreTrainedModel):
    """A BERT classifier that classifies N inputs per encoder pass (data multiplexing).

    Build one with `autoprumux.models.build_model`, or directly from a `MuxBertConfig`; load a
    saved one with `from_pretrained` / `autoprumux.models.load_model`.
    """

    config_class = MuxBertConfig
    config: MuxBertConfig
    _tied_weights_keys = None

    def __init__(self, config: MuxBertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config, add_pooling_layer=True)
        if config.is_compact:
            compact_bert_(self.bert, config)
        encoder_size = config.encoder_hidden_size
        self.multiplexer: Multiplexer | None = None
        self.demultiplexer: Demultiplexer | None = None
        if config.mux_width > 1:
            self.multiplexer = Multiplexer(
                config.multiplexer, config.mux_width, encoder_size, norm=config.mux_norm, seed=config.mux_seed
            )
            self.demultiplexer = build_demultiplexer(
                config.demultiplexer, config.mux_width, encoder_size, config.hidden_size,
                config.demux_layers, config.layer_norm_eps, config.demux_blocks, config.hidden_dropout_prob,
            )
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.retrieval_head: RetrievalHead | None = None
        if config.retrieval_head:
            self.retrieval_head = RetrievalHead(config.hidden_size, config.vocab_size, config.layer_norm_eps)
        self.post_init()

    # -- initialisation ------------------------------------------------------------------------

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, Multiplexer) and module.vectors.shape[-1] == self.config.encoder_hidden_size:
            init.copy_(module.vectors, module.initial_vectors(module.vectors.shape[-1]))
        elif isinstance(module, _KeyedDemultiplexer) and hasattr(module, "keys"):
            init.normal_(module.keys, mean=0.0, std=1.0)

    # -- the forward pass ----------------------------------------------------------------------

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
        retrieval: bool = False,
        retrieval_fraction: float = 1.0,
        retrieval_targets: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        **kwargs,
    ) -> MuxClassifierOutput:
        """Classify B x N inputs given as [B, N, T] tensors (ids, mask, token types).

        labels [B, N] (optional) give `loss`, the mean cross-entropy over the slots where `valid`
        [B, N] is True (all slots when `valid` is None). `retrieval=True` (with a retrieval head)
        also returns the token-retrieval loss on a `retrieval_fraction` of the positions: at each
        position, a random instance's token is predicted from its demultiplexed state (at N = 1,
        from the encoder's state). The tokens to predict are `retrieval_targets` [B, N, T] when
        given (masked-token pre-training: the inputs are corrupted, the targets are not), else
        the inputs themselves.
        """
        if input_ids.dim() == 2:
            input_ids, attention_mask, token_type_ids = (
                t.unsqueeze(1) if t is not None else None for t in (input_ids, attention_mask, token_type_ids)
            )
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if self.config.mux_width == 1:
            pooled, hidden_states, encoded = self._forward_plain(
                input_ids, attention_mask, token_type_ids, output_hidden_states
            )
        else:
            pooled, hidden_states, encoded = self._forward_mux(
                input_ids, attention_mask, token_type_ids, output_hidden_states
            )
        logits = self.classifier(self.dropout(pooled))
        output = MuxClassifierOutput(logits=logits, hidden_states=hidden_states)
        if labels is not None:
            output.loss = classification_loss(logits, labels, valid)
        if retrieval:
            targets = input_ids if retrieval_targets is None else retrieval_targets.view_as(input_ids)
            self._add_retrieval(output, encoded, targets, attention_mask, retrieval_fraction)
        return output

    def _encode(
        self, embedded: torch.Tensor, mask: torch.Tensor | None, output_hidden_states: bool
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """Run every encoder layer (as modules, so hooks fire) on [B, T', d_enc]."""
        layer_mask = create_bidirectional_mask(config=self.config, inputs_embeds=embedded, attention_mask=mask)
        states = [embedded] if output_hidden_states else None
        hidden = embedded
        for layer in self.bert.encoder.layer:
            hidden = layer(hidden, layer_mask)
            if states is not None:
                states.append(hidden)
        return hidden, tuple(states) if states is not None else None

    def _forward_plain(self, input_ids, attention_mask, token_type_ids, output_hidden_states):
        """N = 1: BertForSequenceClassification's computation, nothing else."""
        embedded = self.bert.embeddings(
            input_ids=input_ids[:, 0], token_type_ids=None if token_type_ids is None else token_type_ids[:, 0]
        )
        encoded, hidden_states = self._encode(embedded, attention_mask[:, 0], output_hidden_states)
        pooled = self.bert.pooler.activation(self.bert.pooler.dense(encoded[:, 0]))
        return pooled.unsqueeze(1), hidden_states, encoded

    def _forward_mux(self, input_ids, attention_mask, token_type_ids, output_hidden_states):
        """N > 1: embed each instance, mix, encode once, demultiplex each instance (`config.readout`)."""
        batch, width, length = input_ids.shape
        words = self.bert.embeddings.word_embeddings(input_ids)  # [B, N, T, d_enc]
        if token_type_ids is None or not self.config.mux_token_types:
            token_type_ids = torch.zeros_like(input_ids)
        prefix = self.demultiplexer.prefix_embeddings()
        if prefix is not None:  # `index` demux: N index positions in front of every instance
            extra = prefix.shape[1]
            words = torch.cat([prefix.to(words.dtype).unsqueeze(0).expand(batch, -1, -1, -1), words], dim=2)
            token_type_ids = F.pad(token_type_ids, (extra, 0))
            attention_mask = F.pad(attention_mask, (extra, 0), value=1)
        total = words.shape[2]
        embedded = self.bert.embeddings(
            inputs_embeds=words.reshape(batch * width, total, -1),
            token_type_ids=token_type_ids.reshape(batch * width, total),
        ).view(batch, width, total, -1)
        if self.config.mux_mask_padding:  # an instance's padding contributes nothing to the mixture
            embedded = embedded * attention_mask.unsqueeze(-1).to(embedded.dtype)
            encoder_mask = attention_mask.amax(dim=1)
        else:  # MUX-PLM: every position is mixed and attended
            encoder_mask = torch.ones_like(attention_mask[:, 0])
        mixed = self.multiplexer(embedded)
        if self.config.mux_embed_pass:  # MUX-PLM: positions, token type 0, LayerNorm and dropout again
            mixed = self.bert.embeddings(inputs_embeds=mixed, token_type_ids=torch.zeros_like(encoder_mask))
        encoded, hidden_states = self._encode(mixed, encoder_mask, output_hidden_states)
        if self.config.readout == "instance_mean":
            states = self.demultiplexer(encoded, mask=attention_mask[:, :, self.demultiplexer.prefix_length :])
        else:
            states = self.demultiplexer(encoded)  # [B, N, d]
        if not self.config.mux_pooler:
            return states, hidden_states, encoded
        pooled = self.bert.pooler.activation(self.bert.pooler.dense(states))
        return pooled, hidden_states, encoded

    def _add_retrieval(self, output, encoded, input_ids, attention_mask, fraction) -> None:
        """Token retrieval: at each position, predict a random instance's token from its demuxed state."""
        if self.retrieval_head is None:
            raise ValueError("retrieval=True needs a model built with retrieval_head=True")
        batch, width, length = input_ids.shape
        instance = torch.randint(width, (batch, length), device=input_ids.device)
        targets = input_ids.gather(1, instance.unsqueeze(1)).squeeze(1)  # [B, T]
        scored = attention_mask.gather(1, instance.unsqueeze(1)).squeeze(1).bool()
        ignore = self.config.retrieval_ignore_ids or [self.config.pad_token_id or 0]
        scored &= ~torch.isin(targets, torch.tensor(ignore, device=targets.device))
        if fraction < 1.0:
            scored &= torch.rand(batch, length, device=targets.device) < fraction
        if self.demultiplexer is None:  # N = 1: the encoder's own states
            states = encoded
        else:
            states = self.demultiplexer(encoded, instance=instance)  # [B, T, d]
        logits = self.retrieval_head(states[scored])
        labels = targets[scored]
        output.retrieval_logits = logits
        output.retrieval_labels = labels
        output.retrieval_loss = (
            F.cross_entropy(logits.float(), labels) if labels.numel() else logits.sum() * 0.0
        )

    # -- what users ask of a model -------------------------------------------------------------

    def add_retrieval_head(self) -> None:
        """Give the model a new (randomly initialised) token-retrieval head."""
        config = self.config
        head = RetrievalHead(config.hidden_size, config.vocab_size, config.layer_norm_eps)
        for module in head.modules():
            self._init_weights(module)
        self.retrieval_head = head.to(self.classifier.weight.device)
        config.retrieval_head = True

    def reset_classifier(self, num_labels: int, label_names=None) -> None:
        """A new (randomly initialised) classifier for `num_labels` labels, e.g. after pre-training."""
        config = self.config
        names = list(label_names) if label_names else [f"LABEL_{i}" for i in range(num_labels)]
        config.num_labels = self.num_labels = num_labels
        config.id2label, config.label2id = dict(enumerate(names)), {n: i for i, n in enumerate(names)}
        classifier = nn.Linear(config.hidden_size, num_labels)
        self._init_weights(classifier)
        self.classifier = classifier.to(self.bert.embeddings.word_embeddings.weight.device)

    def drop_retrieval_head(self) -> None:
        """Remove the token-retrieval head (after warm-up) so the deployed model does not carry it."""
        self.retrieval_head = None
        self.config.retrieval_head = False

    def prunable_parameter_count(self) -> int:
        """Encoder weights CoFi counts: Q, K, V, O and FFN in/out of every layer (no biases)."""
        total = 0
        for layer in self.bert.encoder.layer:
            attention = layer.attention
            if hasattr(attention, "self"):
                total += sum(m.weight.numel() for m in (attention.self.query, attention.self.key, attention.self.value))
                total += attention.output.dense.weight.numel()
            if hasattr(layer.intermediate, "dense"):
                total += layer.intermediate.dense.weight.numel() + layer.output.dense.weight.numel()
        return total

    def dense_prunable_parameter_count(self) -> int:
        """The same count for the unpruned model of this config: L * (4 d^2 + 2 d d_ff)."""
        d, ff = self.config.hidden_size, self.config.intermediate_size
        return self.config.num_hidden_layers * (4 * d * d + 2 * d * ff)


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Mean cross-entropy of logits [B, N, C] against labels [B, N] over the valid slots."""
    losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), reduction="none")
    if valid is None:
        return losses.mean()
    weights = valid.reshape(-1).to(losses.dtype)
    return (losses * weights).sum() / weights.sum().clamp_min(1.0)


try:  # registration makes AutoModelForSequenceClassification.from_pretrained work on saved models
    from transformers import AutoConfig, AutoModelForSequenceClassification

    AutoConfig.register("muxbert", MuxBertConfig)
    AutoModelForSequenceClassification.register(MuxBertConfig, MuxBertForSequenceClassification)
except ValueError:  # already registered (module reloaded)
    pass
