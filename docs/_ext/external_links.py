"""Cross-references to the libraries animedex-store builds on, resolved offline.

Sphinx's intersphinx would download each library's inventory at build time; the build must not
touch the network, so the few names our signatures and pages refer to are listed here, with the
page of the library's documentation that describes them. A name missing from this table and from
our own API fails the build (``nitpicky``): add it here, or write it as a literal.

Docstrings also name the package's internals (``:mod:`animedex_store.rules.flight```, a constant
such as ``PURGE_BATCH``), which the reference does not document: such a name is shown as code,
without a link, when it exists (an ``animedex_store`` module or attribute, or a short name that a
module of the package defines); a name that exists nowhere still fails the build.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment

PYTHON = "https://docs.python.org/3/library/"
SQLALCHEMY = "https://docs.sqlalchemy.org/en/20/"

#: Fully qualified name (as autodoc writes it in a signature) -> URL of its documentation.
EXTERNAL: dict[str, str] = {
    "datetime": f"{PYTHON}datetime.html#datetime.datetime",
    "datetime.datetime": f"{PYTHON}datetime.html#datetime.datetime",
    "pathlib.Path": f"{PYTHON}pathlib.html#pathlib.Path",
    "Path": f"{PYTHON}pathlib.html#pathlib.Path",
    "collections.abc.Mapping": f"{PYTHON}collections.abc.html#collections.abc.Mapping",
    "collections.abc.Iterable": f"{PYTHON}collections.abc.html#collections.abc.Iterable",
    "collections.abc.Iterator": f"{PYTHON}collections.abc.html#collections.abc.Iterator",
    "collections.abc.AsyncIterator": f"{PYTHON}collections.abc.html#collections.abc.AsyncIterator",
    "collections.abc.Callable": f"{PYTHON}collections.abc.html#collections.abc.Callable",
    "collections.abc.Awaitable": f"{PYTHON}collections.abc.html#collections.abc.Awaitable",
    "typing.Any": f"{PYTHON}typing.html#typing.Any",
    "Exception": f"{PYTHON}exceptions.html#Exception",
    "ValueError": f"{PYTHON}exceptions.html#ValueError",
    "TypeError": f"{PYTHON}exceptions.html#TypeError",
    "RuntimeError": f"{PYTHON}exceptions.html#RuntimeError",
    "tuple": f"{PYTHON}stdtypes.html#tuple",
    "uuid.UUID": f"{PYTHON}uuid.html#uuid.UUID",
    "datetime.timedelta": f"{PYTHON}datetime.html#datetime.timedelta",
    "sqlalchemy.engine.Engine": f"{SQLALCHEMY}core/connections.html#sqlalchemy.engine.Engine",
    "sqlalchemy.engine.URL": f"{SQLALCHEMY}core/engines.html#sqlalchemy.engine.URL",
    "sqlalchemy.ext.asyncio.AsyncEngine": f"{SQLALCHEMY}orm/extensions/asyncio.html#sqlalchemy.ext.asyncio.AsyncEngine",
    "pydantic.BaseModel": "https://docs.pydantic.dev/latest/api/base_model/",
    "BaseModel": "https://docs.pydantic.dev/latest/api/base_model/",
}
#: The libraries the integrations plug into: any of their names links to their documentation (their
#: signatures name private modules, such as ``hishel._core.models.Entry``, that move between releases).
LIBRARIES: dict[str, str] = {
    "requests_cache": "https://requests-cache.readthedocs.io/en/stable/",
    "hishel": "https://hishel.com/",
    "aiohttp_client_cache": "https://aiohttp-client-cache.readthedocs.io/en/stable/",
    "cachecontrol": "https://cachecontrol.readthedocs.io/en/latest/",
    "django": "https://docs.djangoproject.com/en/stable/topics/cache/",
    "httpx": "https://www.python-httpx.org/",
    "aiohttp": "https://docs.aiohttp.org/en/stable/",
    "requests": "https://requests.readthedocs.io/en/latest/",
}
#: Built-in names Sphinx's Python domain refers to without documenting them: no link, no warning.
BUILTINS = {"None", "bool", "bytes", "int", "float", "str", "dict", "list", "set", "frozenset", "object", "type"}


def resolve(app: Sphinx, env: BuildEnvironment, node: Any, contnode: nodes.Element) -> nodes.Element | None:
    if node.get("refdomain") != "py":
        return None
    # An attribute's type is sometimes handed over unparsed and cut at its first comma
    # ("collections.abc.Mapping[str"): the name before its subscript is what to link.
    target = node.get("reftarget", "").split("[", 1)[0]
    url = EXTERNAL.get(target) or LIBRARIES.get(target.split(".", 1)[0])
    if url is not None:
        reference = nodes.reference("", "", internal=False, refuri=url, reftitle=target)
        reference.append(contnode)
        return reference
    if target in BUILTINS or is_internal(target) or is_member(node, target):
        return contnode
    return None


def exists(dotted: str) -> bool:
    """Whether a dotted name under ``animedex_store`` is a module of the package or an attribute of one."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            value: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            if not hasattr(value, attribute):
                return False
            value = getattr(value, attribute)
        return True
    return False


def is_member(node: Any, target: str) -> bool:
    """A short name that is an attribute of the class whose docstring names it (a private helper method)."""
    module, cls = node.get("py:module"), node.get("py:class")
    if not (module and cls and module.startswith("animedex_store")) or "." in target:
        return False
    return exists(f"{module}.{cls}.{target}")


def is_internal(target: str) -> bool:
    """A name of the package that the reference does not document (see the module's docstring)."""
    if target == "animedex_store" or target.startswith("animedex_store."):
        return exists(target)
    if "." in target or not target.isidentifier():
        return False
    modules = [module for name, module in list(sys.modules.items()) if name.startswith("animedex_store.")]
    return any(target in vars(module) for module in modules if module is not None)


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("missing-reference", resolve)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
