"""The one base class of the errors a user fixes: a config value, a data file, a weights file,
a run folder. Entry points print them on one screen, with the doc that explains the fix and
without a traceback, and exit with :attr:`UserError.exit_code` (:mod:`iqa.cli`)."""

from __future__ import annotations


class UserError(Exception):
    """An error in what the user gave: the message names the key or file and the fix.

    Subclasses set ``doc``, the page (``docs/...md#anchor``) printed under the message when
    the message does not already link one.
    """

    doc: str = "README.md"
    exit_code: int = 2


class ConfigurationError(UserError, ValueError):
    """An unknown or incompatible config value; the message names the key and what is allowed."""

    doc = "README.md#methods-and-options"


def user_error_in(error: BaseException) -> UserError | None:
    """``error`` or the first :class:`UserError` it was raised from (Hydra's ``instantiate``
    and some libraries re-raise with ``from``)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, UserError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
