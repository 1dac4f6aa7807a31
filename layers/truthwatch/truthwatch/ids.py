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

import numpy as np

MAX_ID_LENGTH = 128
ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")
ID_CHARACTERS = "A-Z a-z 0-9 . _ : -"

_COUNTER_BITS = 42
"""rand_a (12 bits) and the top 30 bits of rand_b form a counter within one millisecond."""
_RANDOM_BITS = 32
"""The low bits of rand_b stay random in every id."""
_COUNTER_SEED_MASK = (1 << (_COUNTER_BITS - 1)) - 1
"""A fresh millisecond seeds the counter below half its range, leaving room to count up."""
_VECTOR_MIN = 16
"""From this many ids on, :func:`_format_batch` builds them with numpy: 1,024 ids cost about a
tenth of a millisecond instead of nearly two."""
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_DASHES = (8, 13, 18, 23)
_HEX_COLUMNS = np.array([i for i in range(36) if i not in _DASHES])


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
            if count >= _VECTOR_MIN and not (self._counter + count) >> _COUNTER_BITS:
                first = self._counter + 1
                self._counter += count
                return _format_batch(self._last_ms, first, entropy[: 4 * count])
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


def _format_batch(unix_ms: int, first_counter: int, low: bytes) -> list[str]:
    """What ``_format(_pack(unix_ms, first_counter + i, low_i))`` gives for each ``i``, in numpy.

    The caller guarantees the counters stay within 42 bits, so the timestamp is shared.
    ``low`` holds four big-endian random bytes per id.
    """
    count = len(low) // 4
    counters = np.arange(first_counter, first_counter + count, dtype=np.uint64)
    rand_a = (counters >> np.uint64(30)).astype(np.uint16)
    raw = np.empty((count, 16), dtype=np.uint8)
    raw[:, :6] = np.frombuffer((unix_ms & ((1 << 48) - 1)).to_bytes(6, "big"), dtype=np.uint8)
    raw[:, 6:8] = (0x7000 | rand_a).astype(">u2")[:, None].view(np.uint8)
    high_b = (counters & np.uint64((1 << 30) - 1)).astype(np.uint32) | np.uint32(0b10 << 30)
    raw[:, 8:12] = high_b.astype(">u4")[:, None].view(np.uint8)
    raw[:, 12:] = np.frombuffer(low, dtype=np.uint8).reshape(count, 4)

    text = np.full((count, 36), ord("-"), dtype=np.uint8)
    nibbles = np.empty((count, 32), dtype=np.uint8)
    nibbles[:, 0::2] = raw >> 4
    nibbles[:, 1::2] = raw & 0x0F
    text[:, _HEX_COLUMNS] = _HEX[nibbles]
    joined = text.tobytes().decode("ascii")
    return [joined[start : start + 36] for start in range(0, len(joined), 36)]


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
