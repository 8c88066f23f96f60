"""Up-front check that listed image files exist and look decodable, cached on disk.

Each file's header is read (format, size, mode; no pixels decoded) and its last bytes are
looked at: a JPEG ends with the end-of-image marker, a PNG with its ``IEND`` chunk, and a
BMP or WebP file is at least as long as its header declares. A file whose end looks wrong
(truncated, or trailing bytes after the marker), or whose format has no such check, is
decoded once in full to settle it. Files above ``data.max_pixels`` are refused from the
header. What is learned is cached per folder, keyed by each file's absolute path, size and
modification time, so checking 10,000 unchanged images again only ``stat``s them.

Cache files are replaced atomically (:func:`iqa.jsonio.write_json`), so
DDP ranks and workers checking at once leave a whole cache, at worst without each other's
entries (then checked again next time).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from PIL import Image

from iqa.data.image_io import DEFAULT_MAX_PIXELS, CorruptImageError, pixel_limit, read_rgb, too_many_pixels
from iqa.jsonio import write_json

log = logging.getLogger(__name__)

VERSION = 1  # bump when what is stored changes: older cache files are ignored
_TAIL_BYTES = 1024  # how far from the end a JPEG end-of-image marker or PNG IEND chunk may lie


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/iqa/image_checks``, by default ``~/.cache/iqa/image_checks``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "iqa" / "image_checks"


def check_images(
    paths: Iterable[str | Path],
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    cache_dir: str | Path | None = None,
) -> dict[Path, str]:
    """The files among ``paths`` that cannot be used, each with the reason (in order).

    Args:
        paths: image files.
        max_pixels: refuse images with more pixels (``None``: no limit).
        cache_dir: folder of the cache files (default :func:`default_cache_dir`); where it
            cannot be written, every file is checked again next time.
    """
    cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    parents: dict[Path, list[Path]] = {}
    for path in paths:
        path = path if isinstance(path, Path) else Path(path)
        parents.setdefault(path.parent, []).append(path)
    folders: dict[str, list[Path]] = {}
    for parent, files in parents.items():
        folders.setdefault(os.path.abspath(parent), []).extend(files)
    problems = {}
    for folder, files in folders.items():
        problems.update(_check_folder(folder, files, max_pixels, cache_dir))
    return problems


def _check_folder(folder: str, files: list[Path], max_pixels: int | None, cache_dir: Path) -> dict[Path, str]:
    cache_file = cache_dir / f"{hashlib.sha1(folder.encode()).hexdigest()}.json"
    cached = _read_cache(cache_file, folder)
    fresh: dict[str, dict] = {}
    problems = {}
    for path in files:
        try:
            stat = os.stat(path)
        except OSError as error:
            problems[path] = "file not found" if isinstance(error, FileNotFoundError) else str(error)
            continue
        facts = cached.get(path.name)
        if not (facts and facts["size"] == stat.st_size and facts["mtime_ns"] == stat.st_mtime_ns
                and _settled(facts, max_pixels)):
            facts = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, **_inspect(path, stat.st_size, max_pixels)}
            if not facts.pop("transient", False):
                fresh[path.name] = facts
        reason = facts["error"] or too_many_pixels((facts["width"], facts["height"]), max_pixels)
        if reason:
            problems[path] = reason
    if fresh:
        _write_cache(cache_file, folder, fresh)
    return problems


def _settled(facts: dict, max_pixels: int | None) -> bool:
    """Whether cached facts decide the file under this pixel limit (an image too large to
    decode under an earlier limit was never decoded, so its ending may still be unknown)."""
    return bool(facts["error"] or facts["complete"] or too_many_pixels((facts["width"], facts["height"]), max_pixels))


def _inspect(path: Path, size: int, max_pixels: int | None) -> dict:
    """Header facts, ``error`` (why the file is unusable, or ``None``) and ``complete``
    (``True`` once its ending or a full decode showed it whole; ``None``: not known)."""
    facts = {"error": None, "width": 0, "height": 0, "complete": None}
    try:
        with pixel_limit(None), Image.open(path) as image:  # the header only; no limit: the size is judged below
            image_format, (facts["width"], facts["height"]) = image.format, image.size
            facts["mode"] = image.mode
    except (OSError, SyntaxError, ValueError, EOFError) as error:  # as read_rgb: Pillow's ways of failing
        facts["error"] = f"not a readable image: {error or type(error).__name__}"
        facts["transient"] = getattr(error, "errno", None) is not None  # e.g. permissions: not cached
        return facts
    if facts["width"] < 1 or facts["height"] < 1:
        facts["error"] = f"empty image ({facts['width']}x{facts['height']})"
    elif _ends_whole(path, image_format, size):
        facts["complete"] = True
    elif not too_many_pixels((facts["width"], facts["height"]), max_pixels):
        try:
            read_rgb(path, max_pixels)
            facts["complete"] = True
        except CorruptImageError as error:
            facts["error"] = error.reason
    return facts


def _ends_whole(path: Path, image_format: str | None, size: int) -> bool:
    """Whether the file's length or last bytes show it whole (``False`` also where the
    format has no such check)."""
    with open(path, "rb") as handle:
        if image_format in ("BMP", "WEBP"):  # both headers declare the file's length
            head = handle.read(8)
            declared = int.from_bytes(head[2:6] if image_format == "BMP" else head[4:8], "little")
            declared += 8 if image_format == "WEBP" else 0  # RIFF counts from after its size field
            return 0 < declared <= size
        handle.seek(max(0, size - _TAIL_BYTES))
        tail = handle.read()
    if image_format in ("JPEG", "MPO"):
        return b"\xff\xd9" in tail
    if image_format == "PNG":
        return b"IEND" in tail
    return False


def _read_cache(cache_file: Path, folder: str) -> dict[str, dict]:
    try:
        content = json.loads(cache_file.read_text())
    except (OSError, ValueError):  # absent, unreadable or damaged: checked afresh
        return {}
    if not isinstance(content, dict) or content.get("version") != VERSION or content.get("folder") != folder:
        return {}
    return content.get("files", {})


def _write_cache(cache_file: Path, folder: str, fresh: dict[str, dict]) -> None:
    """Merge ``fresh`` into the cache file as it is now and replace it atomically."""
    try:
        files = {**_read_cache(cache_file, folder), **fresh}
        write_json(cache_file, {"version": VERSION, "folder": folder, "files": files}, indent=None)
    except OSError as error:
        log.debug("image check cache %s not written (%s); files are checked again next time", cache_file, error)
