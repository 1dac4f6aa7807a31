import uuid

import pytest

import truthwatch.ids as ids_module
from truthwatch.ids import UUIDv7Generator, id_problems, uuid7_time_ms


def test_ids_are_uuid7_and_increase_within_a_batch_and_across_calls():
    generator = UUIDv7Generator(clock_ms=lambda: 1_700_000_000_123)

    first = generator.new(1000)
    second = generator.new(3)

    ids = first + second
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(i[14] == "7" and i[19] in "89ab" for i in ids)
    assert uuid7_time_ms(ids[0]) == 1_700_000_000_123


def test_a_clock_that_steps_back_keeps_the_order():
    times = iter([2_000, 1_000])
    generator = UUIDv7Generator(clock_ms=lambda: next(times))

    before, after = generator.new(1)[0], generator.new(1)[0]

    assert after > before
    assert uuid7_time_ms(after) == 2_000


def test_counter_overflow_borrows_the_next_millisecond(monkeypatch):
    # A 2-bit counter seeded at 1 overflows on the third id instead of after 2**41.
    monkeypatch.setattr(ids_module, "_COUNTER_BITS", 2)
    monkeypatch.setattr(ids_module, "_COUNTER_SEED_MASK", 1)
    generator = UUIDv7Generator(clock_ms=lambda: 5_000, random_bytes=lambda n: b"\xff" * n)

    ids = generator.new(3)

    assert ids == sorted(ids)
    assert uuid7_time_ms(ids[-1]) == 5_001


@pytest.mark.parametrize(
    ("ids", "reason"),
    [
        (["a", "a"], "duplicate of the id at index 0"),
        (["a b", "c"], "characters"),
        (["x" * 129, "c"], "1 to 128"),
        (["a"], "1 inference ids for 2 rows"),
        ([7, "c"], "characters"),
    ],
)
def test_id_problems_name_the_fault(ids, reason):
    problems = id_problems(ids, 2)

    assert problems and reason in str(problems[0]["reason"])


def test_good_ids_have_no_problems():
    assert id_problems(["order-1:row.0", "x" * 128], 2) == []


def test_batch_ids_built_with_numpy_equal_the_ones_built_one_by_one(monkeypatch):
    entropy = bytes(range(256)) * 17
    vector = UUIDv7Generator(clock_ms=lambda: 1_796_326_136_679, random_bytes=lambda n: entropy[:n])
    scalar = UUIDv7Generator(clock_ms=lambda: 1_796_326_136_679, random_bytes=lambda n: entropy[:n])

    batch = vector.new(1024)
    monkeypatch.setattr(ids_module, "_VECTOR_MIN", 10**9)
    one_by_one = scalar.new(1024)

    assert batch == one_by_one
    assert (vector.new(1), vector._counter) == (scalar.new(1), scalar._counter)
    assert all(uuid.UUID(value).version == 7 for value in batch)


def test_batch_near_counter_overflow_takes_the_loop_that_borrows_a_millisecond(monkeypatch):
    monkeypatch.setattr(ids_module, "_COUNTER_BITS", 5)
    monkeypatch.setattr(ids_module, "_COUNTER_SEED_MASK", 15)
    generator = UUIDv7Generator(clock_ms=lambda: 9_000, random_bytes=lambda n: b"\xff" * n)

    ids = generator.new(40)

    assert ids == sorted(ids) and len(set(ids)) == 40
    assert uuid7_time_ms(ids[-1]) == 9_001
