"""animedex's real responses (``benchmarks/data``): what the store really holds, for benchmarks and tests."""

from __future__ import annotations

import base64
import functools
import gzip
import json
from pathlib import Path
from typing import NamedTuple

__all__ = ["SAMPLE", "RealPayload", "real_payloads", "real_rows"]

#: 300 responses animedex recorded for its own tests (see ``benchmarks/data/README.md``).
SAMPLE = Path(__file__).resolve().parent / "data" / "animedex-payloads-sample.jsonl.gz"


class RealPayload(NamedTuple):
    """One recorded response: its key, body and headers."""

    backend: str
    signature: str
    payload: bytes
    headers: dict[str, str]

    @property
    def headers_blob(self) -> bytes:
        """The headers as the store keeps them: UTF-8 JSON."""
        return json.dumps(self.headers, ensure_ascii=False).encode("utf-8")


@functools.lru_cache(maxsize=1)
def real_payloads() -> tuple[RealPayload, ...]:
    """Every response of the sample, in file order."""
    with gzip.open(SAMPLE, "rt", encoding="utf-8") as lines:
        records = [json.loads(line) for line in lines]
    return tuple(
        RealPayload(record["backend"], record["signature"], base64.b64decode(record["payload_b64"]), record["headers"])
        for record in records
    )


def real_rows(count: int) -> list[RealPayload]:
    """``count`` rows: the sample cycled, each with a signature of its own."""
    sample = real_payloads()
    return [
        item._replace(signature=f"{item.signature}#{index}")
        for index, item in ((index, sample[index % len(sample)]) for index in range(count))
    ]
