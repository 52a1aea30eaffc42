"""Model-based test: the repository behaves like a dict of rows under a fake clock.

Hypothesis drives random sequences of writes, reads, overwrites, deletes,
purges, clock moves (backwards too) and close/reopen against a plain-Python
model, on SQLite and on each server. Any difference is a bug, shrunk to the
shortest sequence that shows it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test
from reliability import SCALE, record

from animedex_store import CacheRepository
from animedex_store.core.clock import FrozenClock

# Keys that must stay distinct on every engine (case, trailing space, NFC/NFD,
# LIKE wildcards, quotes), plus arbitrary text. NUL is left to the hostile-input
# tests: PostgreSQL cannot store it.
TRICKY_KEYS = ["k", "K", "k ", " k", "caf\u00e9", "cafe\u0301", "%", "_", "'", '"', "\\", "\U0001f600", ""]
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
BACKENDS = st.sampled_from(["anilist", "jikan"])
SIGNATURES = st.sampled_from(TRICKY_KEYS) | TEXT
PAYLOADS = st.binary(max_size=64)
HEADERS = st.dictionaries(TEXT, TEXT, max_size=3)
TTLS = st.integers(min_value=0, max_value=120)
STEPS = st.integers(min_value=-30, max_value=150) | st.just(0.5)


@dataclass(frozen=True)
class Row:
    """What the model holds for a key."""

    payload: bytes
    headers: dict[str, str]
    fetched_at: int
    expires_at: int


class RepositoryMachine(RuleBasedStateMachine):
    """Compares a repository with ``self.model`` after every step; subclasses set :attr:`open_repository`."""

    open_repository: Callable[[FrozenClock], CacheRepository]
    examples = 0
    steps = 0

    @initialize()
    def start(self) -> None:
        type(self).examples += 1
        self.clock = FrozenClock()
        self.repository = self.open_repository(self.clock)
        self.repository.clear()  # the database outlives an example; the model starts empty
        self.model: dict[tuple[str, str], Row] = {}

    def _now(self) -> int:
        return self.clock.timestamp()

    def _live(self, key: tuple[str, str]) -> Row | None:
        row = self.model.get(key)
        return row if row is not None and row.expires_at > self._now() else None

    def _write(self, key: tuple[str, str], payload: bytes, headers: dict[str, str], ttl: int) -> None:
        type(self).steps += 1
        self.model[key] = Row(payload, dict(headers), self._now(), self._now() + ttl)

    @rule(backend=BACKENDS, signature=SIGNATURES, payload=PAYLOADS, ttl=TTLS)
    def set(self, backend: str, signature: str, payload: bytes, ttl: int) -> None:
        self.repository.set(backend, signature, payload, ttl_seconds=ttl)
        self._write((backend, signature), payload, {}, ttl)

    @rule(backend=BACKENDS, signature=SIGNATURES, payload=PAYLOADS, headers=HEADERS, ttl=TTLS)
    def set_with_meta(self, backend: str, signature: str, payload: bytes, headers: dict[str, str], ttl: int) -> None:
        self.repository.set_with_meta(backend, signature, payload, response_headers=headers, ttl_seconds=ttl)
        self._write((backend, signature), payload, headers, ttl)

    @rule(data=st.data(), payload=PAYLOADS, ttl=TTLS)
    def overwrite(self, data: st.DataObject, payload: bytes, ttl: int) -> None:
        if not self.model:
            return
        key = data.draw(st.sampled_from(sorted(self.model)))
        self.repository.set(*key, payload, ttl_seconds=ttl)
        self._write(key, payload, {}, ttl)

    @rule(backend=BACKENDS, signature=SIGNATURES)
    def get(self, backend: str, signature: str) -> None:
        type(self).steps += 1
        row = self._live((backend, signature))
        assert self.repository.get(backend, signature) == (None if row is None else row.payload)

    @rule(data=st.data(), include_expired=st.booleans())
    def get_with_meta_of_a_known_key(self, data: st.DataObject, include_expired: bool) -> None:
        if not self.model:
            return
        type(self).steps += 1
        key = data.draw(st.sampled_from(sorted(self.model)))
        row = self.model[key] if include_expired else self._live(key)
        found = self.repository.get_with_meta(*key, include_expired=include_expired)
        if row is None:
            assert found is None
            return
        fetched_at = datetime.fromtimestamp(row.fetched_at, timezone.utc)
        assert found == (row.payload, row.headers, fetched_at)
        assert found.expires_at == datetime.fromtimestamp(row.expires_at, timezone.utc)
        assert found.is_stale == (row.expires_at <= self._now())

    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        type(self).steps += 1
        key = data.draw(st.sampled_from(sorted(self.model)) if self.model else st.tuples(BACKENDS, SIGNATURES))
        assert self.repository.delete(*key) == (key in self.model)
        self.model.pop(key, None)

    @rule(seconds=STEPS)
    def advance_time(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def purge_expired(self) -> None:
        type(self).steps += 1
        expired = [key for key, row in self.model.items() if row.expires_at <= self._now()]
        assert self.repository.purge_expired() == len(expired)
        for key in expired:
            del self.model[key]

    @rule()
    def close_and_reopen(self) -> None:
        type(self).steps += 1
        self.repository.close()
        self.repository = self.open_repository(self.clock)

    def teardown(self) -> None:
        repository = getattr(self, "repository", None)
        if repository is not None:
            for key, row in self.model.items():  # the whole model, one last time
                live = row.expires_at > self._now()
                assert repository.get(*key) == (row.payload if live else None)
            repository.close()


def test_the_repository_behaves_like_a_dict_model(
    make_repository: Callable[..., CacheRepository], engine_url: str
) -> None:
    on_sqlite = engine_url.startswith("sqlite")
    examples = SCALE.state_machine_examples if on_sqlite else SCALE.server_state_machine_examples

    class Machine(RepositoryMachine):
        open_repository = staticmethod(lambda clock: make_repository(clock=clock))

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=30,
            deadline=None,
            database=None,  # no example database left behind in the checkout
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
    assert Machine.examples >= 1
    record("state_machine", engine=engine_url.split(":", 1)[0], examples=Machine.examples, steps=Machine.steps)


class ForgetfulRepository(CacheRepository):
    """A planted bug: one-byte payloads are silently not stored."""

    def set(self, backend: str, signature: str, payload: bytes, *, ttl_seconds: int) -> None:
        if len(payload) != 1:
            super().set(backend, signature, payload, ttl_seconds=ttl_seconds)


def test_the_model_comparison_catches_a_planted_bug(tmp_path: Path) -> None:
    class Machine(RepositoryMachine):
        open_repository = staticmethod(lambda clock: ForgetfulRepository(tmp_path / "cache.sqlite", clock=clock))

    with pytest.raises(AssertionError):
        run_state_machine_as_test(
            Machine,
            # Finding it is the point; shrinking it would only cost time.
            settings=settings(max_examples=200, deadline=None, database=None, phases=[Phase.generate]),
        )
