"""Settings of Django's ``tests/runtests.py`` for :mod:`django_suite`: Django's own ``test_sqlite`` settings
with the ``default`` database from ``$ANIMEDEX_STORE_DJANGO_DATABASE`` (a JSON ``DATABASES`` entry), so
the control (Django's ``DatabaseCache``) and the models Django's cache tests use live on the engine
under test. Placed beside ``runtests.py`` in the run's tree, and named with ``--settings``.
"""

import json
import os

from test_sqlite import *  # noqa: F403 - Django's own test settings, then ours on top

_DATABASE = json.loads(os.environ["ANIMEDEX_STORE_DJANGO_DATABASE"])
if _DATABASE["ENGINE"] == "django.db.backends.mysql":
    # Django's MySQL backend is written for mysqlclient; PyMySQL (a dependency of the tests already)
    # stands in for it, as it offers to, rather than a C extension to build on every machine.
    import pymysql

    pymysql.install_as_MySQLdb()
DATABASES = {"default": _DATABASE}
