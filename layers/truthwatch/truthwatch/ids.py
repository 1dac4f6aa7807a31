"""Inference ids: validate the ones callers send, generate time-ordered UUIDv7 ids for the rest.

A caller-supplied id lets a client join its own records with the labels it sends later; it must
be at most :data:`MAX_ID_LENGTH` characters of a URL-, log- and CSV-safe set, so an id never
needs escaping in a label file or a log line. Generated ids are UUIDv7 (RFC 9562): the first 48
bits are the Unix time in milliseconds, so the ids of a batch, and of a process, sort by time.

Python's :mod:`uuid` gains ``uuid7`` only in 3.14, and the Lambda runtime is 3.12, so the small
generator lives here.

Examples
--------
>>> ids = new_ids(3)
>>> len(set(ids)) == 3 and ids == sorted(ids)
True
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Sequence

MAX_ID_LENGTH = 128
ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")
ID_CHARACTERS = "A-Z a-z 0-9 . _ : -"

_COUNTER_BITS = 42
"""rand_a (12 bits) and the top 30 bits of rand_b form a counter within one millisecond."""
_RANDOM_BITS = 32
"""The low bits of rand_b stay random in every id."""
_COUNTER_SEED_MASK = (1 << (_COUNTER_BITS - 1)) - 1
"""A fresh millisecond seeds the counter below half its range, leaving room to count up."""


class UUIDv7Generator:
    """Makes UUIDv7 strings that increase strictly within the process (RFC 9562, method 1).

    Within one millisecond a 42-bit counter, seeded at random, counts up; when it would overflow,
    the timestamp moves one millisecond ahead, as section 6.2 allows. A lock keeps the order
    when threads of a local server share the generator.

    Parameters
    ----------
    clock_ms
        Unix time in milliseconds; replaced in tests to freeze or rewind time.
    random_bytes
        Source of randomness, ``os.urandom`` by default.
    """

    def __init__(
        self,
        clock_ms: Callable[[], int] | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._random_bytes = random_bytes
        self._last_ms = -1
        self._counter = 0
        self._lock = threading.Lock()

    def new(self, count: int = 1) -> list[str]:
        """``count`` new ids, in increasing order."""
        if count <= 0:
            return []
        entropy = self._random_bytes(4 * count + 8)
        with self._lock:
            now = self._clock_ms()
            if now > self._last_ms:
                self._last_ms = now
                self._counter = int.from_bytes(entropy[-8:], "big") & _COUNTER_SEED_MASK
            # A clock that steps back keeps the last timestamp, so the order holds.
            values = []
            for index in range(count):
                self._counter += 1
                if self._counter >> _COUNTER_BITS:
                    self._last_ms += 1
                    self._counter = 0
                low = int.from_bytes(entropy[4 * index : 4 * index + 4], "big")
                values.append(_pack(self._last_ms, self._counter, low))
        return [_format(value) for value in values]


def _pack(unix_ms: int, counter: int, low: int) -> int:
    rand_a = counter >> 30
    rand_b = ((counter & ((1 << 30) - 1)) << _RANDOM_BITS) | low
    return (unix_ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b


def _format(value: int) -> str:
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


_default = UUIDv7Generator()


def new_ids(count: int) -> list[str]:
    """``count`` new UUIDv7 strings from the process-wide generator, in increasing order."""
    return _default.new(count)


def uuid7_time_ms(value: str) -> int:
    """The Unix time in milliseconds that a UUIDv7 string carries."""
    return int(value.replace("-", "")[:12], 16)


def id_problems(ids: Sequence[object], n_rows: int) -> list[dict[str, object]]:
    """Every reason a list of caller-supplied ids is unusable, at most ten, empty when all is well.

    Each problem is ``{"index": i, "reason": ...}`` (``index`` is ``None`` for the list as a
    whole). The ids themselves are not echoed: they may be too long, and they are the caller's.
    """
    if len(ids) != n_rows:
        return [{"index": None, "reason": f"{len(ids)} inference ids for {n_rows} rows; send one per row"}]

    problems: list[dict[str, object]] = []
    first_seen: dict[str, int] = {}
    for index, value in enumerate(ids):
        if not isinstance(value, str) or ID_PATTERN.fullmatch(value) is None:
            problems.append(
                {
                    "index": index,
                    "reason": f"an inference id is 1 to {MAX_ID_LENGTH} characters of {ID_CHARACTERS}",
                }
            )
        elif value in first_seen:
            problems.append({"index": index, "reason": f"duplicate of the id at index {first_seen[value]}"})
        else:
            first_seen[value] = index
        if len(problems) == 10:
            break
    return problems
