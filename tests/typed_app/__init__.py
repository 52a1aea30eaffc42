"""A small application written against animedex-store's public API, type-checked by CI with ``mypy --strict``."""
