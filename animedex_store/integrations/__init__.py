"""Integrations: one module per optional cache library, each importable only with its extra.

:mod:`animedex_store.integrations.django` is Django's cache framework on the store
(``pip install 'animedex-store[django]'``). Importing :mod:`animedex_store` imports
none of them, and none of their libraries.
"""
