"""Django's own ``BaseCacheTests`` on animedex-store's ``StoreCache``, declared as Django declares them for its
own backends (its ``LocMemCacheTests``, ``FileBasedCacheTests``, ...), nothing added, nothing left out.

Not a module of this project's test suite: :mod:`django_suite` puts it in the ``cache`` test app of the
installed Django release's sdist, as ``cache/tests_animedex_store.py``, where ``.tests`` is Django's own
``tests/cache/tests.py``, and Django's ``tests/runtests.py`` runs it. ``LOCATION`` (a SQLite file or a
server sandbox) comes from ``$ANIMEDEX_STORE_DJANGO_LOCATION``.
"""

import os

from django.test import TestCase, override_settings

from .tests import BaseCacheTests, caches_setting_for_tests


@override_settings(
    CACHES=caches_setting_for_tests(
        BACKEND="animedex_store.integrations.django.StoreCache",
        LOCATION=os.environ["ANIMEDEX_STORE_DJANGO_LOCATION"],
    )
)
class StoreCacheTests(BaseCacheTests, TestCase):
    pass
