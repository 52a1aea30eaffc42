"""How a payload is stored: as it is, or compressed (``cache_rows.codec``, revision 0005).

Compression is opt-in per repository (``CacheRepository(..., compression="zlib" | "zstd")``)
and applies to payloads of at least :data:`COMPRESS_FROM_BYTES`: measured on animedex's real
responses, smaller ones save a few dozen bytes and rarely a page, while reading a compressed
row costs about twice a plain one. A compressed result is kept only when it is smaller.
Every reader decodes every codec, whatever its own setting.

zlib is the standard library's. zstd is ``compression.zstd`` on Python 3.14+ and the
``backports.zstd`` package before (``pip install 'animedex-store[zstd]'``), imported only
when a zstd row is read or written: it costs a cold process several milliseconds.
"""

from __future__ import annotations

import zlib
from typing import Any

from ..errors import StoreError

__all__ = [
    "IDENTITY",
    "ZLIB",
    "ZSTD",
    "CODECS",
    "COMPRESS_FROM_BYTES",
    "ZSTD_EXTRA",
    "check_compression",
    "encode",
    "decode",
]

#: ``codec`` values. 0 is also the column's default, so a row the seed's module writes
#: (naming its own columns) is stored as it is.
IDENTITY = 0
ZLIB = 1
ZSTD = 2
#: ``compression=`` names and their codec values.
CODECS = {"zlib": ZLIB, "zstd": ZSTD}
#: Payloads shorter than this are stored as they are, whatever the repository's compression.
COMPRESS_FROM_BYTES = 4096
#: zlib level 1 and zstd level 3: on the real payloads 3.9x and 4.4x smaller, decompressing
#: at about 500 and 1,000 MB/s; higher levels cost more to write for a few percent.
ZLIB_LEVEL = 1
ZSTD_LEVEL = 3
#: What to install for zstd before Python 3.14.
ZSTD_EXTRA = "pip install 'animedex-store[zstd]'"
_ZSTD_MODULES = ("compression.zstd", "backports.zstd")
_zstd_module: Any = None


def check_compression(compression: object) -> int:
    """``compression=``: ``None``, ``"zlib"`` or ``"zstd"``; returns its codec value.

    ``"zstd"`` without a zstd module installed is a ``ValueError`` naming the extra
    (found without importing it).
    """
    if compression is None:
        return IDENTITY
    if not isinstance(compression, str):
        raise TypeError(f"compression must be None, 'zlib' or 'zstd', not {type(compression).__name__}")
    codec = CODECS.get(compression)
    if codec is None:
        raise ValueError(f"compression must be None, 'zlib' or 'zstd', not {compression!r}")
    if codec == ZSTD and not any(_module_exists(name) for name in _ZSTD_MODULES):
        raise ValueError(f"compression='zstd' needs a zstd module: {ZSTD_EXTRA} (or use compression='zlib')")
    return codec


def _module_exists(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:  # its parent package is missing (compression before 3.14)
        return False


def _zstd() -> Any:
    global _zstd_module
    if _zstd_module is None:
        import importlib

        for name in _ZSTD_MODULES:
            try:
                _zstd_module = importlib.import_module(name)
                break
            except ImportError:
                continue
    return _zstd_module


def encode(payload: bytes, codec: int) -> tuple[bytes, int]:
    """``(stored bytes, codec)`` for ``payload`` written by a repository compressing with ``codec``:
    compressed when it is at least :data:`COMPRESS_FROM_BYTES` long and that makes it smaller."""
    if codec == IDENTITY or len(payload) < COMPRESS_FROM_BYTES:
        return payload, IDENTITY
    if codec == ZLIB:
        packed = zlib.compress(payload, ZLIB_LEVEL)
    else:
        packed = _zstd().compress(payload, level=ZSTD_LEVEL)
    return (packed, codec) if len(packed) < len(payload) else (payload, IDENTITY)


def decode(stored: bytes, codec: int, target: str, key: tuple[str, str]) -> bytes:
    """The payload of a row stored with ``codec``. A codec this version does not know, a zstd row
    without a zstd module, or bytes that do not decode are a :class:`StoreError` naming the row:
    never garbage bytes."""
    if codec == IDENTITY:
        return stored
    backend, signature = key
    row = f"the row {backend!r}, {signature!r} in {target}"
    if codec == ZLIB:
        try:
            return zlib.decompress(stored)
        except zlib.error as exc:
            raise StoreError(f"{row} is not valid zlib data ({exc})", target=target) from exc
    if codec == ZSTD:
        zstd = _zstd()
        if zstd is None:
            raise StoreError(f"{row} is zstd-compressed; to read it: {ZSTD_EXTRA}", target=target)
        try:
            data: bytes = zstd.decompress(stored)
        except zstd.ZstdError as exc:
            raise StoreError(f"{row} is not valid zstd data ({exc})", target=target) from exc
        return data
    raise StoreError(
        f"{row} is stored with codec {codec}, which this animedex-store does not know: it was written by a "
        "newer version. Upgrade animedex-store (pip install -U animedex-store).",
        target=target,
    )
