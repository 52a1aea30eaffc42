"""Benchmarks of animedex-store against the seed it replaces and its alternatives.

Run ``python -m benchmarks`` (``--quick`` for a smoke run, ``--json`` for
machines). Every ratio compares numbers measured in the same run: the raw
``sqlite3`` seed (:mod:`benchmarks.seed_baseline`), diskcache, and the raw
PostgreSQL/MariaDB drivers when those servers answer.
"""
