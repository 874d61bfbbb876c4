from collections import Counter

from kstream_lab.aggregations.spec import WindowSpec
from kstream_lab.generator import OrderGenerator, loyalty_tier_for, murmur2_partition
from kstream_lab.generator.orders import murmur2

WINDOW = WindowSpec(size="60s", grace="10s")


def _gen(seed=7, **kw):
    return OrderGenerator(seed=seed, start_ms=1_700_000_000_000, partitions=6, window=WINDOW, **kw)


def test_murmur2_matches_kafka_reference_vectors():
    # Values from Kafka's UtilsTest.testMurmur2 (as signed 32-bit ints).
    cases = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    for data, expected in cases.items():
        signed = murmur2(data) - (1 << 32) if murmur2(data) >= 1 << 31 else murmur2(data)
        assert signed == expected, data


def test_same_seed_same_orders():
    a = [(o.key, o.value, o.poison, o.partition, o.kind) for o in _gen(late_fraction=0.05).take(500)]
    b = [(o.key, o.value, o.poison, o.partition, o.kind) for o in _gen(late_fraction=0.05).take(500)]
    c = [(o.key, o.value) for o in _gen(seed=8).take(500)]
    assert a == b
    assert [x[:2] for x in a] != c


def test_kinds_and_values_are_realistic():
    orders = list(_gen(late_fraction=0.02, poison_fraction=0.01).take(20_000))
    kinds = {k: sum(o.kind == k for o in orders) for k in ("ok", "late", "poison")}
    assert sum(kinds.values()) == 20_000
    assert 300 <= kinds["late"] <= 500 and 120 <= kinds["poison"] <= 280
    good = [o for o in orders if o.value]
    assert all(isinstance(o.value["total_cents"], int) and o.value["total_cents"] >= 50 for o in good)
    assert all(o.partition == murmur2_partition(o.key.encode(), 6) for o in orders)
    assert all(o.window_start == o.timestamp - o.timestamp % 60_000 for o in good)
    assert all(o.tier == loyalty_tier_for(o.value["customer_id"]) for o in good)
    per_customer = Counter(o.value["customer_id"] for o in good)
    assert per_customer.most_common(1)[0][1] > len(good) / 100  # skewed customers


def test_late_label_follows_the_partition_watermark_rule():
    orders = list(_gen(late_fraction=0.05).take(5_000))
    watermark = {}
    for o in orders:
        if o.value is None:
            continue
        wm = watermark.get(o.partition, -(2**63))
        assert (o.kind == "late") == (o.window_start + 60_000 + 10_000 <= wm)
        watermark[o.partition] = max(wm, o.timestamp)


def test_tiers_are_stable_and_distributed():
    tiers = [loyalty_tier_for(f"C{i:07d}") for i in range(10_000)]
    share = {t: tiers.count(t) / len(tiers) for t in set(tiers)}
    assert set(share) == {"bronze", "silver", "gold", "platinum"}
    assert 0.45 < share["bronze"] < 0.55 and 0.02 < share["platinum"] < 0.08
