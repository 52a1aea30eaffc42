"""hishel's own `tests/test_async_httpx2.py`, unchanged, on our storages on every engine (:mod:`hishel_suite`)."""

import sys

import pytest

if sys.version_info < (3, 10):
    pytest.skip("hishel 2.0 needs Python 3.10 or later", allow_module_level=True)
import hishel_suite  # noqa: E402 - after the skip

globals().update(hishel_suite.load("test_async_httpx2"))
