"""The CUDA caching allocator model (``bench.allocator``) against sequences computed by hand from the rules
of ``c10/cuda/CUDACachingAllocator.cpp``, and fed from a simulated step (``bench.gpusim``)."""

from __future__ import annotations

import pytest

from bench.allocator import AllocatorOutOfMemory, CachingAllocator, round_size, segment_size
from bench.gpusim import simulate_step
from models import build

KiB, MiB = 2**10, 2**20


def test_requests_are_rounded_to_512_and_segments_sized_by_pool():
    assert [round_size(n) for n in (1, 512, 513, 1000)] == [512, 512, 1024, 1024]
    assert segment_size(MiB) == 2 * MiB  # small pool
    assert segment_size(MiB + 512) == segment_size(10 * MiB - 512) == 20 * MiB
    assert segment_size(10 * MiB) == 10 * MiB and segment_size(30 * MiB + 1) == 32 * MiB


def test_two_small_requests_share_one_2mib_segment_and_a_third_opens_another():
    a = CachingAllocator()
    a.malloc("x", 600 * KiB)
    a.malloc("y", 600 * KiB)
    assert (a.allocated, a.reserved) == (1200 * KiB, 2 * MiB)
    a.malloc("z", 900 * KiB)  # 848 KiB left in the first segment: too small
    assert (a.allocated, a.reserved) == (2100 * KiB, 4 * MiB)


def test_a_5mib_request_opens_a_20mib_segment_whose_rest_the_next_one_reuses():
    a = CachingAllocator()
    a.malloc(1, 5 * MiB)
    a.malloc(2, 5 * MiB)
    a.malloc(3, 5 * MiB)
    assert (a.allocated, a.reserved) == (15 * MiB, 20 * MiB)
    a.malloc(4, 5 * MiB)  # the last 5 MiB: no split (rest 0), same segment
    assert (a.allocated, a.reserved) == (20 * MiB, 20 * MiB)
    a.malloc(5, 30 * MiB + 1)  # >= 10 MiB: its own segment, rounded up to 2 MiB
    assert (a.allocated, a.reserved, a.peak_reserved) == (50 * MiB + 512, 52 * MiB, 52 * MiB)


def test_a_large_block_is_not_split_for_a_rest_up_to_1mib_and_counts_whole_as_allocated():
    a = CachingAllocator()
    a.malloc("big", 12 * MiB)  # a 12 MiB segment
    a.free("big")
    a.malloc("fits", 11 * MiB)  # rest 1 MiB: not > 1 MiB, the whole 12 MiB block is handed out
    assert (a.allocated, a.reserved) == (12 * MiB, 12 * MiB)
    a.free("fits")
    a.malloc("split", 10 * MiB)  # rest 2 MiB > 1 MiB: split
    assert a.allocated == 10 * MiB
    a.malloc("rest", 1536 * KiB)  # best fit: the 2 MiB rest, not a new segment (its 512 KiB rest stays)
    assert (a.allocated, a.reserved) == (12 * MiB, 12 * MiB)


def test_freed_neighbours_merge_and_best_fit_takes_the_smallest_free_block():
    a = CachingAllocator()
    for key in "abcd":
        a.malloc(key, 4 * MiB)  # one 20 MiB segment: a b c d, 4 MiB free at its end
    a.free("b")
    a.free("c")  # b and c merge into one 8 MiB block
    a.malloc("e", 8 * MiB)  # fits the merged 8 MiB block; the 4 MiB tail is smaller but too small
    assert (a.allocated, a.reserved) == (16 * MiB, 20 * MiB)
    a.free("e")
    a.malloc("f", 3 * MiB)  # best fit: the 4 MiB tail (rest 1 MiB: unsplit, 4 MiB allocated), not the hole
    a.malloc("g", 8 * MiB)  # so the 8 MiB hole is still whole
    assert (a.allocated, a.reserved) == (20 * MiB, 20 * MiB)
    for key in "adfg":
        a.free(key)
    a.malloc("h", 20 * MiB)  # everything merged back into the one 20 MiB segment
    assert (a.allocated, a.reserved, a.peak_allocated) == (20 * MiB, 20 * MiB, 20 * MiB)


def test_release_on_failure_frees_wholly_free_segments_then_retries():
    a = CachingAllocator(capacity=64 * MiB)
    a.malloc("x", 30 * MiB)
    a.malloc("small", KiB)
    a.free("x")
    assert (a.allocated, a.reserved) == (1024, 32 * MiB)  # x's segment stays reserved
    a.malloc("y", 40 * MiB)  # 32 + 40 > 64: x's free segment goes, then 2 + 40 fits
    assert (a.reserved, a.peak_reserved) == (42 * MiB, 42 * MiB)
    with pytest.raises(AllocatorOutOfMemory):
        a.malloc("z", 24 * MiB)  # 42 + 24 > 64 and no segment is wholly free


def test_a_segment_with_a_block_in_use_is_not_released():
    a = CachingAllocator(capacity=40 * MiB)
    a.malloc("x", 4 * MiB)
    a.malloc("y", 4 * MiB)  # same 20 MiB segment
    a.free("x")
    with pytest.raises(AllocatorOutOfMemory):
        a.malloc("z", 24 * MiB)  # 20 + 24 > 40, and y keeps its segment
    a.free("y")
    a.malloc("z", 24 * MiB)  # now the segment is wholly free: released, then 24 fits
    assert (a.allocated, a.reserved, a.peak_reserved) == (24 * MiB, 24 * MiB, 24 * MiB)


def test_zero_byte_requests_take_no_block_and_keys_are_checked():
    a = CachingAllocator()
    a.malloc("empty", 0)
    a.free("empty")
    a.malloc("x", 1)
    with pytest.raises(KeyError):
        a.malloc("x", 1)
    assert (a.allocated, a.reserved) == (512, 2 * MiB)


@pytest.mark.parametrize("mode", ["train", "generate"])
def test_a_simulated_steps_modelled_reserved_peak_covers_its_allocated_peak(mode):
    handle = build("locost", "tiny", device="meta")
    sim = simulate_step(handle, lambda: handle.make_batch(512, target_len=16), mode, new_tokens=3,
                        dtype="bf16", memoise=False)
    total = sim.base_bytes + sim.peak_bytes
    assert total <= sim.reserved_peak_bytes
    # tiny tensors all come from the small pool: reserved is whole 2 MiB segments, at most ~2x the blocks
    assert sim.reserved_peak_bytes % (2 * MiB) == 0 and sim.reserved_peak_bytes < 2 * total + 20 * MiB


def test_no_reserved_estimate_where_a_memoised_kernel_call_was_replayed():
    """A replayed call's temporaries raise the allocated peak but never reach the allocator model."""
    handle = build("locost", "tiny", device="meta")
    sim = simulate_step(handle, lambda: handle.make_batch(512, target_len=16), "train", dtype="bf16")
    assert sim.memo_replays > 0 and sim.reserved_peak_bytes is None
