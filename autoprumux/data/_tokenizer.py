"""Tokenizers: a pretrained model's own, or a word-level vocabulary built from the training split.

From-scratch presets get a `tokenizers` WordLevel model over lower-cased words and punctuation,
with BERT's special tokens ([PAD] = 0, [UNK], [CLS], [SEP], [MASK]) and BERT's templates:
`[CLS] a [SEP]` for one sentence, `[CLS] a [SEP] b [SEP]` for a pair (token type 1 on `b [SEP]`).
It is wrapped in `PreTrainedTokenizerFast`, so it saves and loads next to the model with
`save_pretrained` / `AutoTokenizer.from_pretrained`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from autoprumux.data._types import TextSplit
from autoprumux.errors import ModelError
from autoprumux.models.presets import is_muxplm, resolve_model

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # ids 0..4, in this order


def _word_tokenizer(vocab: dict[str, int]) -> Tokenizer:
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()  # whitespace, then each punctuation mark
    cls, sep = vocab["[CLS]"], vocab["[SEP]"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return tokenizer


def _texts(split: TextSplit) -> Iterable[str]:
    yield from split.texts
    if split.text_pairs is not None:
        yield from split.text_pairs


def word_vocabulary(texts: Iterable[str], vocab_size: int | None = None) -> dict[str, int]:
    """Special tokens, then words by falling frequency (ties alphabetically), at most `vocab_size` in all."""
    probe = _word_tokenizer({token: i for i, token in enumerate(SPECIAL_TOKENS)})
    counts: Counter[str] = Counter()
    for text in texts:
        normalized = probe.normalizer.normalize_str(text)
        counts.update(word for word, _ in probe.pre_tokenizer.pre_tokenize_str(normalized))
    for token in SPECIAL_TOKENS:
        counts.pop(token.lower(), None)
    words = sorted(counts, key=lambda w: (-counts[w], w))
    if vocab_size is not None:
        words = words[: max(0, vocab_size - len(SPECIAL_TOKENS))]
    return {token: i for i, token in enumerate((*SPECIAL_TOKENS, *words))}


def build_tokenizer(model: str, train: TextSplit, *, vocab_size: int | None = None) -> PreTrainedTokenizerFast:
    """The tokenizer for `model` (a preset, checkpoint path or hub id) on a task with training split `train`.

    A pretrained model brings its own tokenizer (`train` and `vocab_size` are unused). A
    from-scratch preset gets a word-level vocabulary of the words in `train` (both sentences of a
    pair task), capped at `vocab_size` entries including the 5 special tokens; the order is
    deterministic, so the same split gives the same ids.
    """
    source = resolve_model(model)
    if source.is_pretrained and is_muxplm(source.pretrained):
        from autoprumux.models.muxplm import muxplm_dir

        folder = muxplm_dir(source.pretrained)  # offline, a hub id says here how to use a local folder
        try:
            return AutoTokenizer.from_pretrained(folder)
        except (OSError, ValueError):
            raise ModelError(
                f"MUX-PLM {model!r} has no tokenizer files in {str(folder)!r}; they use bert-base-uncased's: copy its "
                "vocab.txt and tokenizer_config.json into that folder"
            ) from None
    if source.is_pretrained:
        try:
            return AutoTokenizer.from_pretrained(source.pretrained)
        except (OSError, ValueError) as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"cannot load the tokenizer of model {model!r}: {first_line}") from None
    if vocab_size is not None and vocab_size <= len(SPECIAL_TOKENS):
        raise ModelError(f"vocab_size = {vocab_size!r} is invalid; expected an integer > {len(SPECIAL_TOKENS)}")
    vocab = word_vocabulary(_texts(train), vocab_size)
    return PreTrainedTokenizerFast(
        tokenizer_object=_word_tokenizer(vocab),
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )
