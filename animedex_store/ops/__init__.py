"""Operator features beside the calls themselves: the ``max_bytes`` size cap, copying a cache
between databases, and a read-only look at a store for ``animedex-store info``."""
