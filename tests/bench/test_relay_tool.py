"""bench.relay, the relay's CPU per packet against a viewer's copy: the tool runs and measures what it says."""

from __future__ import annotations

from bench.relay import measure


async def test_the_relay_bench_times_every_path_and_the_edge_takes_every_packet() -> None:
    """Protects the tool (not a speed): every figure is there and positive, and the edge's replica
    ingested every packet the run fed it, so relay_in_us (and relay_in_floor_us, a new replica's) is the
    cost of a real ingest, not of a drop."""
    out = await measure(600)
    for key in (
        "copy_python_us",
        "copy_c_us",
        "relay_out_us",
        "relay_in_us",
        "relay_out_vs_copy_python",
        "relay_in_vs_copy_python",
        "relay_in_floor_us",
        "relay_in_floor_vs_copy_python",
    ):
        assert out[key] > 0, key
    assert out["relay_in_replica_packets"] == 800  # 200 warm-up + 600 timed
    assert out["relay_in_floor_replica_packets"] == 800  # a new replica's floor refuses none of them
