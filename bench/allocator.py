"""A model of PyTorch's CUDA caching allocator: how much it *reserves* (``max_memory_reserved``) for a
sequence of tensor allocations and frees, beside what it hands out (``max_memory_allocated``).

Rules (``c10/cuda/CUDACachingAllocator.cpp``, constants in ``c10/core/AllocatorConfig.h``; default
settings: no ``PYTORCH_CUDA_ALLOC_CONF``, no expandable segments, one stream):
- a request of n > 0 bytes is rounded up to a multiple of 512 (``round_size``, ``kMinBlockSize``);
- requests up to 1 MiB (``kSmallSize``) come from the small pool, larger ones from the large pool;
- the smallest free block of the pool that fits is taken, the lower address among equal sizes
  (best fit: ``get_free_block`` on a set ordered by size, then address);
- with none, a new segment is reserved (``cudaMalloc``; ``get_allocation_size``): 2 MiB for the small
  pool (``kSmallBuffer``), 20 MiB for large requests under 10 MiB (``kLargeBuffer``, ``kMinLargeAlloc``),
  else the request rounded up to 2 MiB (``kRoundLarge``);
- the block found is split, the request taking its front, when the rest is >= 512 bytes (small pool) or
  > 1 MiB (large pool) (``should_split``); an unsplit block counts whole as allocated;
- a freed block merges with free neighbours of its segment (``free_block``, ``try_merge_blocks``);
- segments stay reserved; only when a ``cudaMalloc`` would pass the GPU's memory are all wholly free
  segments released (``release_cached_blocks``) and the reservation retried, then out of memory.

Sizes in bytes. ``allocated`` is PyTorch's ``allocated_bytes`` stat (blocks handed out, whole),
``reserved`` its ``reserved_bytes`` (segments); ``peak_*`` their highest values.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

MiB = 2**20
MIN_BLOCK = 512            # kMinBlockSize
SMALL_SIZE = 1 * MiB       # kSmallSize: largest small-pool request
SMALL_BUFFER = 2 * MiB     # kSmallBuffer: small-pool segment
LARGE_BUFFER = 20 * MiB    # kLargeBuffer: segment for large requests under kMinLargeAlloc
MIN_LARGE_ALLOC = 10 * MiB  # kMinLargeAlloc
ROUND_LARGE = 2 * MiB      # kRoundLarge: rounding of larger segments


class AllocatorOutOfMemory(MemoryError):
    """A segment the model needs does not fit the capacity even after releasing the free segments."""


def round_size(nbytes: int) -> int:
    """A request's block size: ``nbytes`` rounded up to a multiple of 512 (``round_size``)."""
    return -(-nbytes // MIN_BLOCK) * MIN_BLOCK


def segment_size(block: int) -> int:
    """Bytes reserved by a new segment for a rounded request ``block`` (``get_allocation_size``)."""
    if block <= SMALL_SIZE:
        return SMALL_BUFFER
    if block < MIN_LARGE_ALLOC:
        return LARGE_BUFFER
    return -(-block // ROUND_LARGE) * ROUND_LARGE


@dataclass(eq=False)
class _Block:
    """A run of one segment: ``address`` (bytes from an arbitrary origin), ``size``, its neighbours."""
    address: int
    size: int
    small: bool
    allocated: bool = False
    prev: _Block | None = field(default=None, repr=False)
    next: _Block | None = field(default=None, repr=False)


class CachingAllocator:
    """The caching allocator's segments and blocks (module docstring) fed with ``malloc(key, nbytes)`` and
    ``free(key)``; ``capacity`` (bytes, None: unbounded) is what ``cudaMalloc`` can reserve in all.
    Raises ``AllocatorOutOfMemory`` past it, ``KeyError`` on a key malloc'ed twice or freed unknown."""

    def __init__(self, capacity: int | None = None):
        self.capacity = capacity
        self.allocated = self.reserved = self.peak_allocated = self.peak_reserved = 0
        self._free = {True: [], False: []}  # small pool?: sorted (size, address) of free blocks
        self._at: dict[int, _Block] = {}    # address -> free block
        self._blocks: dict = {}             # key -> allocated block
        self._top = 0                       # next segment's address

    def malloc(self, key, nbytes: int) -> None:
        """Hand out a block for the request ``key`` of ``nbytes`` (0: no block, as PyTorch)."""
        if key in self._blocks:
            raise KeyError(f"{key!r} is already allocated")
        if nbytes <= 0:
            return
        size = round_size(nbytes)
        small = size <= SMALL_SIZE
        block = self._best_fit(size, small) or self._new_segment(size, small)
        rest = block.size - size
        if rest >= MIN_BLOCK if small else rest > SMALL_SIZE:
            tail = _Block(block.address + size, rest, small, prev=block, next=block.next)
            if block.next is not None:
                block.next.prev = tail
            block.next, block.size = tail, size
            self._insert(tail)
        block.allocated = True
        self._blocks[key] = block
        self.allocated += block.size
        self.peak_allocated = max(self.peak_allocated, self.allocated)

    def free(self, key) -> None:
        """Return ``key``'s block to its pool, merged with free neighbours (a key of 0 bytes: nothing)."""
        block = self._blocks.pop(key, None)
        if block is None:
            return
        block.allocated = False
        self.allocated -= block.size
        for neighbour in (block.prev, block.next):
            if neighbour is not None and not neighbour.allocated:
                self._remove(neighbour)
                first, second = (neighbour, block) if neighbour is block.prev else (block, neighbour)
                first.size += second.size
                first.next = second.next
                if second.next is not None:
                    second.next.prev = first
                block = first
        self._insert(block)

    def _best_fit(self, size: int, small: bool) -> _Block | None:
        keys = self._free[small]
        i = bisect.bisect_left(keys, (size, -1))
        if i == len(keys):
            return None
        block = self._at[keys[i][1]]
        self._remove(block)
        return block

    def _new_segment(self, size: int, small: bool) -> _Block:
        nbytes = SMALL_BUFFER if small else segment_size(size)
        if self.capacity is not None and self.reserved + nbytes > self.capacity:
            self._release_free_segments()
            if self.reserved + nbytes > self.capacity:
                raise AllocatorOutOfMemory(f"a {nbytes} B segment over {self.reserved} B reserved passes the "
                                           f"{self.capacity} B capacity")
        self.reserved += nbytes
        self.peak_reserved = max(self.peak_reserved, self.reserved)
        self._top += nbytes
        return _Block(self._top - nbytes, nbytes, small)

    def _release_free_segments(self) -> None:
        """``release_cached_blocks``: every wholly free segment (a free block with no neighbour) goes."""
        for small in (True, False):
            for _, address in list(self._free[small]):
                block = self._at[address]
                if block.prev is None and block.next is None:
                    self._remove(block)
                    self.reserved -= block.size

    def _insert(self, block: _Block) -> None:
        bisect.insort(self._free[block.small], (block.size, block.address))
        self._at[block.address] = block

    def _remove(self, block: _Block) -> None:
        keys = self._free[block.small]
        del keys[bisect.bisect_left(keys, (block.size, block.address))]
        del self._at[block.address]
