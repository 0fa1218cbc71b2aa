"""The base every catalog entry's options derive from, and the lookup errors the catalog raises."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict


class Options(BaseModel):
    """Options of one catalog entry: frozen, strict, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class NoOptions(Options):
    """This entry takes no options."""


class CatalogError(Exception):
    """A name or combination the catalog does not offer.

    Not a ValueError on purpose: pydantic lets it through untouched, so the config layer can report
    the exact field path.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def unknown_name(kind: str, given: str, allowed: Iterable[str], extra: str = "") -> str:
    allowed = list(allowed)
    close = difflib.get_close_matches(given, allowed, n=1)
    hint = f" did you mean {close[0]!r}?" if close else ""
    return f"unknown {kind} {given!r};{hint} allowed: {', '.join(allowed)}{extra}"
