"""Quality from a language model's next-token logits over rating words.

Two readouts, both "softmax over a few words, weighted":

* ``"good+fine_vs_poor+bad"`` (the visual-prompt paper's score types, arXiv 2509.03494):
  q = Σ exp(logit of the positive words) / Σ exp(logit of all named words), i.e. weight 1 for
  the words left of ``_vs_`` and 0 for those right of it. Any words may be named; the official
  code's seven are ``good_vs_bad``, ``good_vs_poor``, ``fine_vs_bad``, ``high_vs_low``,
  ``good+high_vs_poor+low``, ``good+fine_vs_poor+bad``, ``good+high+fine_vs_poor+low+bad``.
* ``"qalign5"`` (Q-Align, Wu et al. ICML 2024, eq. 4): softmax over excellent / good / fair /
  poor / bad weighted by 1, 0.75, 0.5, 0.25, 0.

Each word is the single token of " word" (SentencePiece ``▁word``, byte-level BPE ``Ġword``).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from iqa.models.base import ConfigurationError

IMAGE_PLACEHOLDER = "<|image|>"
QALIGN_LEVELS = {"excellent": 1.0, "good": 0.75, "fair": 0.5, "poor": 0.25, "bad": 0.0}


def parse_score_type(score_type: str) -> dict[str, float]:
    """Rating word → weight for ``model.quality_score_type`` (see the module docstring)."""
    if score_type == "qalign5":
        return dict(QALIGN_LEVELS)
    sides = score_type.split("_vs_")
    words = [side.split("+") for side in sides]
    if len(sides) != 2 or not all(all(w.strip() for w in side) for side in words):
        raise ConfigurationError(
            f"model.quality_score_type={score_type!r}: write positive and negative words as "
            "'good+fine_vs_poor+bad' (words joined by '+', sides by '_vs_'), or use 'qalign5'")
    positive, negative = words
    if set(positive) & set(negative) or len(set(positive + negative)) != len(positive + negative):
        raise ConfigurationError(f"model.quality_score_type={score_type!r} names a word twice")
    return {**{w: 1.0 for w in positive}, **{w: 0.0 for w in negative}}


def chat_turn(score_type: str) -> tuple[str, str]:
    """The question and answer start each score type was designed with, for a chat template
    (vp_mllm; ``model.question`` / ``model.answer_prefix`` override them)."""
    if score_type == "qalign5":
        return "How would you rate the quality of this image?", "The quality of the image is"
    return "Rate the technical quality of the image.", ""


def mplug_turn(score_type: str) -> tuple[str, str]:
    """The same for mPLUG-Owl2 (vp_mplug), the question with its ``<|image|>``: the
    visual-prompt paper's instruction, or Q-Align's (the next word completes "The quality of
    the image is ...")."""
    if score_type == "qalign5":
        return "How would you rate the quality of this image?\n<|image|>\n", "The quality of the image is"
    return "<|image|>Rate the technical quality of the image.", ""


def mplug_owl2_text(question: str, answer_prefix: str) -> str:
    """mPLUG-Owl2's conversation text for one user turn and the start of the answer."""
    if question.count(IMAGE_PLACEHOLDER) != 1:
        raise ConfigurationError(f"model.question must contain {IMAGE_PLACEHOLDER} exactly once: {question!r}")
    return ("USER: " + question + ("" if question.endswith("\n") else " ") + "ASSISTANT:"
            + (" " + answer_prefix if answer_prefix else ""))


def rating_token_id(tokenizer, word: str) -> int:
    """The id of the single token that spells " word"; a clear error when there is none."""
    vocab = tokenizer.get_vocab()
    for piece in (f"▁{word}", f"Ġ{word}"):
        if piece in vocab:
            return vocab[piece]
    ids = tokenizer.encode(word, add_special_tokens=False)
    if len(ids) == 1 and ids[0] != tokenizer.unk_token_id:
        return ids[0]
    raise ConfigurationError(
        f"rating word {word!r} of model.quality_score_type is not one known token in this tokenizer "
        f"(it reads {tokenizer.convert_ids_to_tokens(ids)}); choose words that are single tokens")


class QualityReadout(nn.Module):
    """Next-token logits ``(B, vocab)`` → quality ``(B,)`` in [0, 1].

    Args:
        score_type: e.g. ``"good+fine_vs_poor+bad"`` or ``"qalign5"``.
        tokenizer: the backbone's tokenizer (a transformers tokenizer).
    """

    def __init__(self, score_type: str, tokenizer) -> None:
        super().__init__()
        weights = parse_score_type(score_type)
        self.score_type = score_type
        self.words = tuple(weights)
        ids = [rating_token_id(tokenizer, word) for word in self.words]
        self.register_buffer("token_ids", torch.tensor(ids), persistent=False)
        self.register_buffer("weights", torch.tensor(list(weights.values())), persistent=False)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        probabilities = logits[:, self.token_ids].float().softmax(dim=-1)
        return probabilities @ self.weights


def tokenize_with_image(tokenizer, text: str, image_token_index: int) -> list[int]:
    """Token ids of ``text`` with ``image_token_index`` where ``<|image|>`` stands, as mPLUG-Owl2's
    ``tokenizer_image_token`` builds them: each piece tokenized on its own, one BOS at the start."""
    if text.count(IMAGE_PLACEHOLDER) != 1:
        raise ConfigurationError(f"model.question must contain {IMAGE_PLACEHOLDER} exactly once: {text!r}")
    before, after = text.split(IMAGE_PLACEHOLDER)
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    pieces = [tokenizer.encode(piece, add_special_tokens=False) if piece else [] for piece in (before, after)]
    return bos + pieces[0] + [image_token_index] + pieces[1]
