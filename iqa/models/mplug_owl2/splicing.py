"""Replace image placeholders in a token sequence by visual tokens, with modality indicators.

Each ``IMAGE_TOKEN_INDEX`` (-200, as in the official ``mplug_owl2/constants.py``) in ``input_ids``
is replaced in place by the next image's visual tokens (the abstractor's queries and ``vit_eos``);
images are consumed in reading order over the batch. The indicator is 1 on visual tokens, 0 on
text. Sequences that end up of different lengths are right-padded (embedding 0, mask 0, text).
The attention mask is spliced the same way (visual tokens get 1); the official code instead
prepends ones, which is identical for the unpadded masks it is used with.
"""

from __future__ import annotations

import torch
from torch.nn.utils.rnn import pad_sequence

from iqa.models.mplug_owl2.language import TEXT, VISUAL

IMAGE_TOKEN_INDEX = -200


def splice_visual_tokens(
    text_embeds: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor, visual: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``text_embeds`` (B, L, D) of ``input_ids`` (B, L) (placeholder rows are ignored) and
    ``visual`` (n_images, V, D) → ``(embeds, modality, attention_mask)``, each of length ≥ L."""
    placeholders = input_ids == IMAGE_TOKEN_INDEX
    n_images = 0 if visual is None else len(visual)
    if int(placeholders.sum()) != n_images:
        raise ValueError(f"input_ids hold {int(placeholders.sum())} image placeholders ({IMAGE_TOKEN_INDEX}) "
                         f"but {n_images} images were given")
    images = iter(() if visual is None else visual)
    embeds, modalities, masks = [], [], []
    for row_embeds, row_placeholders, row_mask in zip(text_embeds, placeholders, attention_mask):
        pieces, start = [], 0
        for position in row_placeholders.nonzero().flatten().tolist():
            pieces.append((row_embeds[start:position], TEXT, row_mask[start:position]))
            image = next(images)
            pieces.append((image, VISUAL, row_mask.new_ones(len(image))))
            start = position + 1
        pieces.append((row_embeds[start:], TEXT, row_mask[start:]))
        embeds.append(torch.cat([piece for piece, _, _ in pieces]))
        modalities.append(torch.cat([torch.full((len(piece),), kind, device=input_ids.device)
                                     for piece, kind, _ in pieces]))
        masks.append(torch.cat([mask for _, _, mask in pieces]))
    return (pad_sequence(embeds, batch_first=True), pad_sequence(modalities, batch_first=True, padding_value=TEXT),
            pad_sequence(masks, batch_first=True))
