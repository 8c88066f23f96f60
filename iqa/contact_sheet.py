"""Contact sheets of scored images: ``contact_sheet.jpg`` and ``contact_sheet.html``.

Thumbnails sorted by predicted quality, best first, each with its rank and score (and, in
the HTML page, its path, linked relatively to the image). At most :data:`MAX_IMAGES` images
are shown (the best ones), and the sheets say so; ``scores.csv`` holds every score.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from iqa.atomic import atomic_write, atomic_write_text
from iqa.data.image_io import DEFAULT_MAX_PIXELS, CorruptImageError, read_rgb

MAX_IMAGES = 200
THUMB = 160  # thumbnail box side, pixels
COLUMNS = 10
CAPTION = 30  # pixels under each thumbnail for its rank, score and name
LINE = 13  # pixels per line of text
PAD = 6


def _thumbnail(path: Path, max_pixels: int | None) -> Image.Image | None:
    """The image shrunk into a THUMB × THUMB box (oriented as a viewer shows it), or None if unreadable."""
    try:
        image = Image.fromarray(read_rgb(path, max_pixels))
    except (CorruptImageError, OSError):  # changed or removed since it was scored
        return None
    image.thumbnail((THUMB, THUMB), Image.Resampling.LANCZOS)
    return image


def _fit(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont, width: int) -> str:
    """``text`` cut at the front (``…`` + its end) so that it fits ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength("…" + text, font=font) > width:
        text = text[1:]
    return "…" + text


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont, width: int) -> list[str]:
    """``text`` broken into lines of at most ``width`` pixels (at spaces)."""
    lines = [""]
    for word in text.split():
        longer = f"{lines[-1]} {word}".strip()
        if lines[-1] and draw.textlength(longer, font=font) > width:
            lines.append(word)
        else:
            lines[-1] = longer
    return lines


def _headline(shown: int, total: int, unreadable: int) -> str:
    text = f"{shown} images by predicted quality, best first"
    if shown < total:
        text += f" (the best {shown} of {total}; every score is in scores.csv)"
    if unreadable:
        text += f"; {unreadable} unreadable image(s) left out (see scores.csv)"
    return text


def _sheet(ranked: list[tuple[Path, float, Image.Image | None]], headline: str) -> Image.Image:
    """The grid: thumbnails centred in their cells, rank, score and file name under each."""
    columns = max(1, min(COLUMNS, len(ranked)))
    rows = -(-len(ranked) // columns)
    cell_w, cell_h = THUMB + 2 * PAD, THUMB + CAPTION + PAD
    font = ImageFont.load_default()
    lines = _wrap(ImageDraw.Draw(Image.new("RGB", (1, 1))), headline, font, columns * cell_w - 2 * PAD)
    title = len(lines) * LINE + 2 * PAD
    sheet = Image.new("RGB", (columns * cell_w, title + rows * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    for number, line in enumerate(lines):
        draw.text((PAD, PAD + number * LINE), line, fill="black", font=font)
    for index, (path, score, thumb) in enumerate(ranked):
        left, top = (index % columns) * cell_w + PAD, title + (index // columns) * cell_h
        if thumb is None:
            draw.rectangle((left, top, left + THUMB - 1, top + THUMB - 1), fill=(200, 200, 200))
            draw.text((left + PAD, top + THUMB // 2), "unreadable now", fill="black", font=font)
        else:
            sheet.paste(thumb, (left + (THUMB - thumb.width) // 2, top + (THUMB - thumb.height) // 2))
        draw.text((left, top + THUMB + 2), f"#{index + 1}  {score:.4f}", fill="black", font=font)
        draw.text((left, top + THUMB + 15), _fit(draw, path.name, font, THUMB), fill=(90, 90, 90), font=font)
    return sheet


def _data_uri(thumb: Image.Image) -> str:
    buffer = io.BytesIO()
    thumb.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _page(ranked: list[tuple[Path, float, Image.Image | None]], headline: str, folder: Path) -> str:
    """An HTML page: embedded thumbnails in rank order, each linking to its image (a path
    relative to ``folder``), with rank, score and path; every path is escaped."""
    figures = []
    for rank, (path, score, thumb) in enumerate(ranked, start=1):
        link = html.escape(quote(Path(os.path.relpath(path.resolve(), folder.resolve())).as_posix()))
        picture = f'<img src="{_data_uri(thumb)}" alt="#{rank}">' if thumb else "<span>unreadable now</span>"
        figures.append(f'<figure><a href="{link}">{picture}</a><figcaption><b>#{rank}</b> {score:.4f}<br>'
                       f"<code>{html.escape(str(path))}</code></figcaption></figure>")
    style = (f"body{{font-family:sans-serif}} main{{display:flex;flex-wrap:wrap;gap:{PAD}px}} "
             f"figure{{margin:0;width:{THUMB}px}} img{{max-width:{THUMB}px;max-height:{THUMB}px}} "
             "code{word-break:break-all;font-size:80%}")
    return "\n".join(["<!DOCTYPE html>", '<html><head><meta charset="utf-8"><title>Contact sheet</title>',
                      f"<style>{style}</style></head><body>", f"<p>{html.escape(headline)}</p>", "<main>",
                      *figures, "</main></body></html>", ""])


def write_contact_sheets(scores: Iterable[tuple[str | Path, float | None]], folder: str | Path,
                         max_images: int = MAX_IMAGES,
                         max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[Path, Path]:
    """Write ``folder/contact_sheet.jpg`` and ``folder/contact_sheet.html`` (atomically) for
    ``(path, score)`` pairs (score None: unreadable, left out); return their paths."""
    folder = Path(folder)
    scored = [(Path(path), score) for path, score in scores]
    readable = [(path, score) for path, score in scored if score is not None and np.isfinite(score)]
    best = sorted(readable, key=lambda item: (-item[1], str(item[0])))[:max_images]
    ranked = [(path, score, _thumbnail(path, max_pixels)) for path, score in best]
    headline = _headline(len(ranked), len(readable), len(scored) - len(readable))
    sheet = _sheet(ranked, headline)
    jpg = atomic_write(folder / "contact_sheet.jpg", lambda handle: sheet.save(handle, format="JPEG", quality=90))
    page = atomic_write_text(folder / "contact_sheet.html", _page(ranked, headline, folder))
    return jpg, page
