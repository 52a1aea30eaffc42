"""animedex-store under Python's HTTP caches: one module (or small package) per library, each imported
only where that library is installed.

* :mod:`animedex_store.integrations.requests_cache`: ``StoreCache`` and ``StoreDict``, requests-cache's
  ``BaseCache`` and ``BaseStorage`` (``pip install 'animedex-store[requests-cache]'``);
* :mod:`animedex_store.integrations.hishel`: ``StoreStorage`` and ``AsyncStoreStorage``, hishel 2.0's
  storages (``[hishel]``, Python 3.10+);
* :mod:`animedex_store.integrations.aiohttp_client_cache`: ``StoreBackend`` and ``StoreCache``,
  aiohttp-client-cache's ``CacheBackend`` and ``BaseCache`` (``[aiohttp-client-cache]``, Python 3.11+);
* :mod:`animedex_store.integrations.cachecontrol`: ``StoreCache``, CacheControl's
  ``SeparateBodyBaseCache`` (``[cachecontrol]``, Python 3.10+);
* :mod:`animedex_store.integrations.django`: ``StoreCache``, a Django cache backend (``[django]``),
  configured the Django way (``CACHES``).

Importing :mod:`animedex_store` imports none of them, and nothing outside this folder imports an
optional cache library. What they share is written once in
:mod:`animedex_store.integrations.shared`; each module is what its library's API needs and nothing
else.

The convention every class follows: it takes first what its library's own backends take
(requests-cache's and aiohttp-client-cache's ``cache_name``, hishel's and CacheControl's nothing),
then ``target``, anything :class:`~animedex_store.CacheRepository` takes, or the keyword
``repository=``, an open repository to share (an :class:`~animedex_store.AsyncCacheRepository` for
the async classes). ``close()`` closes a repository opened from ``target`` and leaves one handed in
open; it is idempotent, and ``with`` (``async with``) calls it on the way out. Every public class
names its library in the first line of its docstring and in its ``repr()``. A failure an integration
swallows (a row it cannot read, a storage error its library must not see) is logged once on its
logger, ``animedex_store.integrations.<module>``.
"""
