"""The order a language's shards are read in: each pass of an endless stream is a fresh shuffle of all of them."""

from xlsr.data.shard_stream import assigned_shard


def test_every_pass_reads_each_shard_once_in_a_new_order():
    n, passes = 8, 6
    orders = [[assigned_shard(p * n + i, n, 0, "it", shuffle=True) for i in range(n)] for p in range(passes)]
    assert all(sorted(order) == list(range(n)) for order in orders)  # each shard once a pass
    assert len({tuple(order) for order in orders}) == passes  # not the first pass's order over and over
    again = [[assigned_shard(p * n + i, n, 0, "it", shuffle=True) for i in range(n)] for p in range(passes)]
    assert again == orders  # the same seed: the same orders (a resumed run reads on where it stopped)
    other = [[assigned_shard(p * n + i, n, 0, "es", shuffle=True) for i in range(n)] for p in range(passes)]
    assert other != orders  # each language its own shuffle


def test_a_finite_stream_reads_its_shards_in_order():
    assert [assigned_shard(k, 5, 3, "it", shuffle=False) for k in range(10)] == [0, 1, 2, 3, 4] * 2
