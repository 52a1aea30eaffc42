"""A pickle that runs code when it is loaded: what a row planted in a shared table could hold."""

from __future__ import annotations

import pickle
from pathlib import Path

__all__ = ["planted_pickle"]


class _Planted:
    """Unpickling this creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.marker,))


def planted_pickle(marker: Path) -> bytes:
    """Pickle bytes that create the file ``marker`` when unpickled (and do nothing else)."""
    return pickle.dumps(_Planted(marker))
