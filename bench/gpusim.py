"""A GPU cell without a GPU: the step run on fake tensors, its CUDA memory counted from tensor sizes.

What ``torch.cuda.max_memory_allocated()`` minus the memory held before the step reads is the highest
sum, during the step, of the live blocks the caching allocator handed out; each request is rounded up
to a multiple of 512 bytes (``CUDACachingAllocator.cpp``: ``kMinBlockSize``, ``round_size``; a request
of 0 bytes gets no block). ``LiveBytes`` counts exactly that over every tensor storage an op creates,
freeing it when the storage dies. Under ``FakeTensorMode`` every op runs its meta kernel (shape,
dtype, device; no storage, no arithmetic), so a ``base`` step at 64K tokens takes seconds.

How a CUDA step is reproduced (and why):
- Tensors are fake *CPU* tensors standing for CUDA ones: a fake ``cuda`` tensor aborts a CPU-only torch
  build in ``embedding``'s device guard, and autograd's backward needs a CUDA device guard. The model is
  built on ``meta``, then ``to_empty`` under the fake mode (random init needs real values).
- bf16/fp16 cells run under ``torch.autocast("cpu")`` with CUDA's op lists (``bench.cuda_autocast``):
  softmax, layer norm, exp ... in float32 as on a GPU.
- Values: a fake tensor has none. The batch's values are kept beside it, and an op whose inputs all
  have known values (and is small: ``VALUE_NUMEL``) is also run for real on them, so that
  value-dependent ops (LED's ``nonzero`` of its global-attention mask, ``.item()`` of a count) get
  real answers. Views of known values are known at any size (no memory). An op acting element by
  element on values constant along some dimensions (an ``expand``: stride 0) is computed on one slice
  along them and expanded (``Simulator._learn_broadcast``): LED's (batch, 1, L, L) mask at 8 x 16K
  costs 8 x 16K elements, not 2^31. Reading a value nobody knows (a float of the activations) raises
  ``ValueNeeded``.
- Generation is ``greedy_decode``: the encoder once, then N decoder calls with the decoder cache, as
  ``generate`` makes them, for a fixed N (``generate`` reads token values to decide when to stop).
- A CPU tensor with elements (0-dim scalars are legal on CUDA too) reaching an op raises
  ``CpuTensorError`` naming the op: a GPU run would fail there too.

What differs from a real CUDA run (not modelled): the allocator's block splitting and segment slack
(``reserved`` above ``allocated``), library workspaces (cuBLAS, cuDNN, SDPA's kernels) that ATen takes
outside tensors, CUDA-only kernels' choices (SDPA picks flash / memory-efficient kernels on a GPU, the
CPU's flash kernel or the math path here; both keep O(L) memory where the GPU does), and branches on
``device.type == "cuda"`` in model code (the fake tensors say ``cpu``). Segment slack is estimated
beside the peak (``Simulated.reserved_peak_bytes``, ``bench.allocator``); peaks and ``oom`` stay allocated.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import math
import re
import sys
import weakref
from dataclasses import dataclass

import torch
from torch._subclasses.fake_tensor import (
    _DISPATCH_META_HANDLERS,
    DataDependentOutputException,
    DynamicOutputShapeException,
    FakeTensor,
    unset_fake_temporarily,
)
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode, _pop_mode_temporarily

from bench.signals import DEFERRED

GiB, MiB = 2**30, 2**20
#: the caching allocator's granularity: every block is a multiple of it (kMinBlockSize)
BLOCK_BYTES = 512
#: what a process's CUDA context, cuBLAS/cuDNN handles and workspaces keep of the GPU's memory before any
#: tensor (an idle torch process on a CUDA 12 driver shows 0.5-0.6 GiB in nvidia-smi): subtracted from
#: the GPU's memory to give what tensors can use. An assumption stated, not fitted to measurements.
CUDA_CONTEXT_BYTES = 1 * GiB
#: tensors with known values up to this many elements are computed for real beside the fake (views of
#: them at any size: a view allocates nothing; element-by-element ops on broadcast values at any size
#: whose one slice is this small: ``Simulator._learn_broadcast``)
VALUE_NUMEL = 1 << 28  # LED at its 16K limit expands its mask to (1, 1, 16K, 16K) and copies it


@dataclass(frozen=True)
class Gpu:
    """A GPU to simulate: ``memory_bytes`` is what nvidia-smi reports as its total memory."""
    name: str
    description: str
    memory_bytes: int

    @property
    def usable_bytes(self) -> int:
        """Memory tensors can take: the total less ``CUDA_CONTEXT_BYTES``."""
        return self.memory_bytes - CUDA_CONTEXT_BYTES


GPUS = {gpu.name: gpu for gpu in (
    Gpu("h100-80gb", "NVIDIA H100 80GB HBM3", 81_559 * MiB),
    Gpu("a100-80gb", "NVIDIA A100 80GB", 81_920 * MiB),
    Gpu("a100-40gb", "NVIDIA A100 40GB", 40_960 * MiB),
    Gpu("l4-24gb", "NVIDIA L4", 23_034 * MiB),
    Gpu("rtx4090-24gb", "NVIDIA GeForce RTX 4090", 24_564 * MiB),
)}


def parse_gpu(text: str) -> Gpu:
    """A name of ``GPUS``, or a memory size: ``85899345920`` (bytes), ``80GiB``, ``80gb`` (GiB too).
    Raises ``ValueError`` with the known names."""
    key = text.strip().lower()
    if key in GPUS:
        return GPUS[key]
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(gib|gb|mib|mb)?", key)
    if not match:
        raise ValueError(f"unknown GPU {text!r}; use one of {', '.join(GPUS)} or a memory size "
                         "(bytes, or e.g. 80GiB)")
    unit = {None: 1, "gib": GiB, "gb": GiB, "mib": MiB, "mb": MiB}[match.group(2)]
    size = float(match.group(1)) * unit
    if size != int(size) or size <= CUDA_CONTEXT_BYTES:
        raise ValueError(f"a GPU memory size must be a whole number of bytes above the "
                         f"{CUDA_CONTEXT_BYTES / GiB:g} GiB CUDA context: {text!r}")
    return Gpu(size_name(int(size)), f"a GPU with {int(size):,} bytes", int(size))


def size_name(nbytes: int) -> str:
    """One name per memory size, however it was written: ``80gib`` for ``80GB``, ``80GiB``, ``81920mib``
    and ``85899345920``; else ``1126mib``, else the bytes (so that records of one size pair and resume)."""
    for unit, suffix in ((GiB, "gib"), (MiB, "mib")):
        if nbytes % unit == 0:
            return f"{nbytes // unit}{suffix}"
    return str(nbytes)


def block_bytes(nbytes: int) -> int:
    """Bytes the CUDA caching allocator hands out for a request: 0 for 0, else a multiple of 512."""
    return -(-nbytes // BLOCK_BYTES) * BLOCK_BYTES


class CpuTensorError(RuntimeError):
    """A real CPU tensor met an op of a simulated CUDA cell (a GPU run would fail there too)."""


class ValueNeeded(RuntimeError):
    """An op needs a value a fake tensor does not have (nothing known computed it)."""


class LiveBytes(TorchDispatchMode):
    """Counts the storages ops create while active: ``live`` bytes (each rounded by ``block_bytes``),
    ``peak`` the highest ``live`` seen. A storage stops counting when it is freed (a weakref). Storages
    held before the step (``hold``: weights, batch) never count: an op that returns a view of one (a
    weight's ``t()`` inside ``F.linear``) allocates nothing, as on a GPU. Each allocation and free also
    goes to ``allocator`` (a ``bench.allocator.CachingAllocator``) where set."""

    def __init__(self, allocator=None):
        super().__init__()
        self.live = self.peak = 0
        self.allocator = allocator
        self._refs: dict[int, weakref.ref] = {}
        self._held: dict[int, object] = {}  # key -> the storage, kept alive so that its key is not reused

    def hold(self, tensors) -> int:
        """Take the storages of ``tensors`` as held before the step (not counted, never freed during it;
        the allocator model gets them first); returns their allocator bytes (``held_bytes``)."""
        for tensor in tensors:
            storage = tensor.untyped_storage()
            if storage._cdata not in self._held:
                self._held[storage._cdata] = storage
                if self.allocator is not None:
                    self.allocator.malloc(("held", storage._cdata), storage.nbytes())
        return held_bytes(tensors)

    def track(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        key = storage._cdata
        if key in self._held or key in self._refs and self._refs[key]() is not None:
            return
        size = block_bytes(storage.nbytes())
        self._refs[key] = weakref.ref(storage, lambda _, key=key, size=size: self._free(key, size))
        self.live += size
        self.peak = max(self.peak, self.live)
        if self.allocator is not None:
            self.allocator.malloc(key, storage.nbytes())

    def _free(self, key: int, size: int) -> None:
        self._refs.pop(key, None)
        self.live -= size
        if self.allocator is not None:
            self.allocator.free(key)

    def close(self) -> None:
        """Stop counting: the weakrefs go, so storages that die later run no callback."""
        self._refs.clear()
        self._held.clear()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for leaf in _tensors(out):
            self.track(leaf)
        return out


#: per op: (whether its first output is a view of an input, the (index, name) of the arguments it writes,
#: whether it takes strides: ``as_strided``, ``empty_strided`` ...)
_OP_INFO: dict = {}


def _op_info(func) -> tuple[bool, tuple, bool]:
    """``func``'s schema facts the simulator asks about at every call, read once (``_OP_INFO``)."""
    info = _OP_INFO.get(func)
    if info is None:
        schema = func._schema
        views = bool(schema.returns) and schema.returns[0].alias_info is not None  # no new storage
        written = tuple((i, a.name) for i, a in enumerate(schema.arguments)
                        if a.alias_info is not None and a.alias_info.is_write)
        strided = any(a.name == "stride" for a in schema.arguments)
        info = _OP_INFO[func] = (views, written, strided)
    return info


#: ops that act element by element without ``torch.Tag.pointwise`` (out-of-place ``.to``, ``copy``,
#: ``fill``, ``masked_fill`` with a 0-dim tensor value)
ELEMENTWISE = frozenset((torch.ops.aten._to_copy.default, torch.ops.aten.copy.default,
                         torch.ops.aten.fill.Scalar, torch.ops.aten.fill.Tensor,
                         torch.ops.aten.masked_fill.Tensor))


def _elementwise(func) -> bool:
    """Whether each element of ``func``'s output is computed from the same-index elements of its
    (broadcast) inputs alone: ``torch.Tag.pointwise`` ("each element of the output is computed only by
    accessing the corresponding element of all the broadcasted inputs", native_functions.yaml's tags)
    or ``ELEMENTWISE``, and not random (``nondeterministic_seeded``: each element its own draw). Not:
    reductions, scans, matmul, softmax, indexing, ``arange``, ``nonzero``: their outputs depend on
    element counts or positions."""
    tags = func.tags
    return (torch.Tag.pointwise in tags or func in ELEMENTWISE) and \
        torch.Tag.nondeterministic_seeded not in tags


def _tensors(value) -> list:
    """The tensors in an op's arguments or outputs, in ``pytree.tree_leaves`` order (a faster walk of
    the tensors, tuples, lists and dicts they are made of)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if not isinstance(value, (list, tuple)):
        return []
    found = []
    for x in value:
        if isinstance(x, torch.Tensor):
            found.append(x)
        elif isinstance(x, (list, tuple, dict)):
            found += _tensors(x)
    return found


def _written(func, args, kwargs) -> list:
    """The tensors among ``args``/``kwargs`` that ``func`` writes to (``out=``, in-place ops)."""
    written = []
    for i, name in _op_info(func)[1]:
        written += _tensors(args[i] if i < len(args) else kwargs.get(name))
    return written


#: how ``torch.tensor(data)`` enters a fake mode: data made where the mode is, not a stray CPU tensor
_LIFTS = (torch.ops.aten.lift_fresh.default, torch.ops.aten.lift_fresh_copy.default)


class Simulator(LiveBytes):
    """``LiveBytes`` over fake tensors, with the values the simulation knows (module docstring): sits
    above ``fake_mode``; ``known`` maps a fake tensor to a real CPU tensor of its values."""

    def __init__(self, fake_mode, allocator=None):
        super().__init__(allocator)
        from torch.utils.weak import WeakIdKeyDictionary

        self.fake_mode = fake_mode
        self.known = WeakIdKeyDictionary()
        self.signals = DEFERRED  # Ctrl-C / SIGTERM: noted during the step, delivered at its next op

    def fake(self, real: torch.Tensor) -> torch.Tensor:
        """A fake tensor standing for ``real`` (not counted: it exists before the step), values kept."""
        fake = self.fake_mode.from_tensor(real)
        self.known[fake] = real
        return fake

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        handler = _DISPATCH_META_HANDLERS.get(func)
        if handler is not None:  # metadata (prim.device, half of all calls): answered as the fake mode does
            return handler(args)
        if func.namespace == "prim":  # other metadata: no storage, no values
            return func(*args, **kwargs)
        if self.signals.pending:  # a Ctrl-C / SIGTERM noted since the last op: raised here (not in a weakref
            self.signals.deliver()  # callback, nor in a metadata query, which C++ asks where it cannot throw)
        tensors = _tensors(args) + _tensors(kwargs) if kwargs else _tensors(args)
        for x in tensors if func not in _LIFTS else ():
            if not isinstance(x, FakeTensor) and x.dim() > 0:
                raise CpuTensorError(f"{func}: a CPU tensor of shape {tuple(x.shape)} in a simulated CUDA "
                                     "cell (a GPU run would fail here too)")
        known = all(not isinstance(x, FakeTensor) or x in self.known for x in tensors)
        small = known and all(x.numel() <= VALUE_NUMEL for x in tensors)
        try:
            out = func(*args, **kwargs)
        except (DataDependentOutputException, DynamicOutputShapeException):
            if not small:
                raise ValueNeeded(f"{func} needs values of a tensor the simulation does not know") from None
            real = self._real(func, args, kwargs)
            out = pytree.tree_map(lambda r: self._adopt(r) if isinstance(r, torch.Tensor) else r, real)
            return out
        outputs = _tensors(out)
        if not (known and self._learn(func, args, kwargs, outputs, small)):
            self._forget(_written(func, args, kwargs))
        for leaf in outputs:
            self.track(leaf)
        return out

    def _learn(self, func, args, kwargs, outputs: list, small: bool) -> bool:
        """Record the values of ``func``'s ``outputs``, given its inputs' (all known; ``small``: none over
        ``VALUE_NUMEL`` elements): computed for real for a view (no memory, any size) or where the outputs
        are small too, else on one slice (``_learn_broadcast``). Broadcast values (``_broadcast``) are
        never written to nor given to an op that takes strides (``as_strided``: their storage is not laid
        out as the fake's), and a view of them that only a copy could give stays unknown. False: the
        outputs' values stay unknown."""
        views, written = _op_info(func)[0], _written(func, args, kwargs)
        broadcast = any(self._broadcast(x) for x in _tensors(args) + _tensors(kwargs))
        if broadcast and (_op_info(func)[2] or any(self._broadcast(x) for x in written)):
            return False
        if not (views and not written or small and all(leaf.numel() <= VALUE_NUMEL for leaf in outputs)):
            return not written and self._learn_broadcast(func, args, kwargs, outputs)
        try:
            values = _tensors(self._real(func, args, kwargs))
        except RuntimeError:  # view(): a broadcast value's strides cannot give the fake's shape
            if not broadcast:
                raise
            return False
        for fake, value in zip(outputs, values, strict=False):
            self.known[fake] = value
        return True

    def _learn_broadcast(self, func, args, kwargs, outputs: list) -> bool:
        """The value of an op that acts element by element (``_elementwise``) whose inputs' values are
        all constant along some dimensions of its output (stride 0 once broadcast to it, as an
        ``expand`` of fewer elements is): constant along them too, so computed on the first slice along
        them (at most ``VALUE_NUMEL`` elements) and expanded to the output's shape (a broadcast value:
        stride 0 there, no memory). LED expands its (batch, L) mask to (batch, 1, L, L) and converts,
        inverts and fills it before reading ``[:, 0, 0, :]``. False where that does not apply."""
        if len(outputs) != 1 or not _elementwise(func):
            return False
        shape = outputs[0].shape
        spread = {}  # id of a fake input with dimensions -> its value expanded to the output's shape
        for x in _tensors(args) + _tensors(kwargs):
            if isinstance(x, FakeTensor) and x.dim() > 0:  # 0-dim ones stay 0-dim (type promotion)
                if torch.broadcast_shapes(x.shape, shape) != shape:
                    return False
                with unset_fake_temporarily():
                    spread[id(x)] = self.known[x].expand(shape)
        constant = [d for d, n in enumerate(shape)
                    if n > 1 and all(value.stride(d) == 0 for value in spread.values())]
        if not constant or math.prod(1 if d in constant else n for d, n in enumerate(shape)) > VALUE_NUMEL:
            return False

        def first_slice(x):
            value = spread[id(x)]
            for d in constant:
                value = value.narrow(d, 0, 1)
            return value
        out = self._real(func, args, kwargs, lambda x: first_slice(x) if id(x) in spread else self.known[x])
        with unset_fake_temporarily():
            self.known[outputs[0]] = out.expand(shape)
        return True

    def _broadcast(self, fake) -> bool:
        """Whether ``fake``'s known value is a broadcast one (``_learn_broadcast``): stride 0 along a
        dimension of more than one element along which the fake's elements are distinct."""
        value = self.known.get(fake) if isinstance(fake, FakeTensor) else None
        return value is not None and any(real == 0 != stride for stride, real, n in
                                         zip(fake.stride(), value.stride(), fake.shape, strict=True) if n > 1)

    def _forget(self, written: list) -> None:
        """Tensors written by an op of unknown values have unknown values now, and so have their bases
        (K[h] = ... into an empty K made with known values) and every tensor whose known value shares
        the storage of theirs (other views of it: a broadcast value's many slices)."""
        storages = set()
        for x in written:
            for tensor in (x, x._base):
                value = self.known.pop(tensor, None) if tensor is not None else None
                if value is not None:
                    storages.add(value.untyped_storage()._cdata)
        for fake, value in list(self.known.items()) if storages else ():
            if value.untyped_storage()._cdata in storages:
                del self.known[fake]

    def _real(self, func, args, kwargs, value=None):
        """``func`` run for real on the values of its fake arguments: ``value(fake)``, else ``known``."""
        value = value or self.known.__getitem__

        def real(x):
            return value(x) if isinstance(x, FakeTensor) else x
        with unset_fake_temporarily():
            return func(*pytree.tree_map(real, args), **pytree.tree_map(real, kwargs))

    def _adopt(self, real: torch.Tensor) -> torch.Tensor:
        fake = self.fake(real)
        self.track(fake)
        return fake


#: Shape-pure functions (``"module:name"``) that a simulated step runs once per call signature: given the
#: shapes, strides and dtypes of their tensor arguments (and their other arguments' values), what they
#: allocate, and the outputs they return, never depend on values. LOCOST's S4D kernel and its analytic
#: backward (``models/ssm/s4d.py``) dispatch ~25 ops per channel chunk, hundreds of chunks per layer at
#: 64K, and the 12 encoder layers call them with the same shapes; S4's kernel (``models/ssm/s4.py``,
#: LOCOST-S4, SPADE) likewise in no-grad steps (with gradients its autograd graph is not memoised).
MEMOISED = ("models.ssm.s4d:ssm_kernel", "models.ssm.s4d:ssm_kernel_backward", "models.ssm.s4:s4_kernel")


@dataclass(frozen=True)
class _Effect:
    """What one call of a memoised function did to the tracker: ``transient`` the highest live bytes
    above those live at its entry (allocator blocks); ``storages`` (numel, dtype) of its outputs' new
    storages; ``outputs`` per output (storage index, size, stride, storage offset); ``spec`` their pytree."""
    transient: int
    storages: tuple
    outputs: tuple
    spec: object


class Memo:
    """During one ``simulate_step``: the ``_Effect`` of each call signature of the ``MEMOISED`` functions,
    recorded at its first call (the real function on fake tensors, counted by ``simulator``) and replayed
    at later ones: fake outputs of the same layout allocated through the tracker (their blocks count)
    and the peak raised to entry + transient, so the peak is the same to the byte. A call that the
    effect cannot stand for is run for real every time: tensor arguments with known values, or needing
    gradients; outputs that alias an argument, need gradients or are lazily conjugated/negated; or live
    bytes after the call other than entry + the outputs' new storages (it freed something it was given)."""

    def __init__(self, simulator: Simulator):
        self.simulator = simulator
        self.effects: dict = {}  # signature -> _Effect, or None: not memoisable
        self.replays = 0  #: calls answered from a recorded effect

    def wrap(self, function):
        """``function`` memoised (same signature and results' layout)."""
        @functools.wraps(function)
        def memoised(*args, **kwargs):
            key = self._signature(function, args, kwargs)
            effect = self.effects.get(key) if key is not None else None
            if effect is not None:
                return self._replay(effect)
            if key is None or key in self.effects:
                return function(*args, **kwargs)
            out, self.effects[key] = self._record(function, args, kwargs)
            return out
        return memoised

    def _signature(self, function, args, kwargs):
        """A hashable key of everything the call's allocations may depend on, or None (not memoisable)."""
        leaves, spec = pytree.tree_flatten((args, kwargs))
        grad = torch.is_grad_enabled()
        key = [function, spec, grad, torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")]
        for x in leaves:
            if isinstance(x, torch.Tensor):
                if not isinstance(x, FakeTensor) or x in self.simulator.known or grad and x.requires_grad:
                    return None
                key.append((tuple(x.shape), x.stride(), x.storage_offset(), x.dtype, x.is_conj(), x.is_neg(),
                            x.untyped_storage().nbytes()))
            else:
                try:
                    hash(x)
                except TypeError:
                    return None
                key.append(x)
        return tuple(key)

    def _record(self, function, args, kwargs):
        sim = self.simulator
        entry, outer_peak = sim.live, sim.peak
        sim.peak = entry
        try:
            out = function(*args, **kwargs)
        finally:
            transient, sim.peak = sim.peak - entry, max(outer_peak, sim.peak)
        return out, self._effect(out, args, kwargs, entry, transient)

    def _effect(self, out, args, kwargs, entry: int, transient: int) -> _Effect | None:
        """The replayable effect of a call that returned ``out``, or None if it cannot stand for it."""
        given = {x.untyped_storage()._cdata for x in _tensors(args) + _tensors(kwargs)}
        leaves, spec = pytree.tree_flatten(out)
        storages, outputs, index = [], [], {}
        for x in leaves:
            if not isinstance(x, FakeTensor) or x.requires_grad or x.is_conj() or x.is_neg():
                return None
            storage = x.untyped_storage()
            if storage._cdata in given or storage.nbytes() % x.element_size() or x in self.simulator.known:
                return None
            if storage._cdata not in index:
                index[storage._cdata] = len(storages)
                storages.append((storage.nbytes() // x.element_size(), x.dtype))
            if storages[index[storage._cdata]][1] != x.dtype:
                return None
            outputs.append((index[storage._cdata], tuple(x.shape), x.stride(), x.storage_offset()))
        if self.simulator.live != entry + sum(block_bytes(n * d.itemsize) for n, d in storages):
            return None
        return _Effect(transient, tuple(storages), tuple(outputs), spec)

    def _replay(self, effect: _Effect):
        sim = self.simulator
        self.replays += 1
        sim.peak = max(sim.peak, sim.live + effect.transient)
        with _pop_mode_temporarily() as mode:  # made by the fake mode, tracked here: no values computed
            assert mode is sim, mode
            storages = [torch.empty(numel, dtype=dtype) for numel, dtype in effect.storages]
            for storage in storages:
                sim.track(storage)
            outputs = [storages[i].as_strided(size, stride, offset)
                       for i, size, stride, offset in effect.outputs]
        return pytree.tree_unflatten(outputs, effect.spec)


@contextlib.contextmanager
def memoising(simulator: Simulator):
    """While open, the ``MEMOISED`` functions are replaced by one ``Memo``'s wrappers wherever they are
    looked up: every loaded module whose global of that name is the function (the defining module and
    any ``from ... import`` of it)."""
    memo, patched = Memo(simulator), []
    for entry in MEMOISED:
        module_name, name = entry.split(":")
        function = getattr(importlib.import_module(module_name), name)
        wrapper = memo.wrap(function)
        for module in list(sys.modules.values()):
            if getattr(module, name, None) is function:
                patched.append((module, name, function))
                setattr(module, name, wrapper)
    try:
        yield memo
    finally:
        for module, name, function in patched:
            setattr(module, name, function)


@contextlib.contextmanager
def _not_tracing():
    """transformers takes a fake tensor for a sign of graph tracing (``is_tracing``) and then skips
    value checks a CUDA run makes (``torch.all(attention_mask == 1)``); the simulation must take the
    CUDA run's path, so while open a fake tensor is not a sign of tracing."""
    from transformers.utils import import_utils

    original = import_utils.is_fake_tensor
    import_utils.is_fake_tensor = lambda x: False
    try:
        yield
    finally:
        import_utils.is_fake_tensor = original


@dataclass
class Simulated:
    """A simulated step's CUDA memory: ``base_bytes`` held before it (weights, batch), ``peak_bytes``
    the step's highest live bytes above that (max_memory_allocated - base), both in allocator blocks;
    ``reserved_peak_bytes`` the caching allocator's modelled peak of segments reserved, base included
    (``max_memory_reserved``; ``bench.allocator``, the base's storages allocated first, in order), None
    where ``Memo`` replayed a call (its temporaries are not allocated again; ``memoise=False`` gives it)."""
    base_bytes: int
    peak_bytes: int
    params: object  #: ``models.ParamCounts``
    memo_replays: int = 0  #: calls of ``MEMOISED`` functions answered by ``Memo`` (not simulated again)
    reserved_peak_bytes: int | None = None


def held_storages(tensors) -> dict[int, int]:
    """Key (``_cdata``) -> bytes of the distinct storages of ``tensors``, in order (tied weights once)."""
    return {t.untyped_storage()._cdata: t.untyped_storage().nbytes() for t in tensors}


def held_bytes(tensors) -> int:
    """Allocator bytes of the distinct storages of ``tensors`` (tied weights count once)."""
    return sum(block_bytes(nbytes) for nbytes in held_storages(tensors).values())


def to_fake(model: torch.nn.Module, fake_mode) -> None:
    """Give ``model`` (built on ``meta``) uninitialised fake CPU parameters and buffers, in place;
    tied weights stay one tensor (``Module.to_empty`` under a fake mode unties them)."""
    made: dict[int, tuple] = {}  # id of the meta tensor -> (it, its fake replacement)

    def fake(tensor):
        if id(tensor) not in made:
            with fake_mode:
                new = torch.empty_like(tensor, device="cpu")
            if isinstance(tensor, torch.nn.Parameter):
                new = torch.nn.Parameter(new, requires_grad=tensor.requires_grad)
            made[id(tensor)] = (tensor, new)
        return made[id(tensor)][1]

    for module in model.modules():
        for table in (module._parameters, module._buffers):
            for name, tensor in table.items():
                if tensor is not None:
                    table[name] = fake(tensor)


def autocast_dtype(dtype: str) -> torch.dtype | None:
    """The autocast dtype of a cell's ``dtype`` (fp32, bf16, fp16): None for fp32."""
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]


def simulate_step(handle, make_batch, mode: str, *, new_tokens: int = 1, dtype: str = "fp32",
                  memoise: bool = True) -> Simulated:
    """Run one ``mode`` step (train, encode, generate) of ``handle`` (built on ``meta``) on fake tensors
    standing for CUDA ones. ``make_batch()`` makes the batch (real CPU tensors, whose values are kept)
    once the model stands on the fake device. ``memoise``: run each call signature of the ``MEMOISED``
    functions once (``Memo``; the same peak, fewer ops). Raises ``CpuTensorError``, ``ValueNeeded``, or
    whatever the model raises (``UnsupportedLengthError`` ...)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from bench.allocator import CachingAllocator
    from bench.cuda_autocast import cuda_autocast_rules

    fake_mode = FakeTensorMode(allow_non_fake_inputs=True)  # 0-dim CPU scalars, as CUDA takes them
    simulator = Simulator(fake_mode, CachingAllocator())
    to_fake(handle.model, fake_mode)
    fake_batch = {key: simulator.fake(value) for key, value in make_batch().items()}
    base = simulator.hold([*handle.model.parameters(), *handle.model.buffers(), *fake_batch.values()])
    step = {"train": lambda: handle.train_loss(fake_batch), "encode": lambda: handle.encode(fake_batch),
            "generate": lambda: handle.greedy_decode(fake_batch, new_tokens)}[mode]
    lower = autocast_dtype(dtype)
    memo = None
    with simulator.signals, contextlib.ExitStack() as stack:
        stack.callback(simulator.close)  # the step's tensors die after it: no callbacks then
        if lower is not None:
            stack.enter_context(cuda_autocast_rules())
            stack.enter_context(torch.autocast("cpu", dtype=lower))
        stack.enter_context(_not_tracing())
        if memoise:
            memo = stack.enter_context(memoising(simulator))
        stack.enter_context(fake_mode)
        stack.enter_context(simulator)
        step()
    return Simulated(base_bytes=base, peak_bytes=simulator.peak, params=handle.params,
                     memo_replays=memo.replays if memo else 0,
                     # a replayed call's temporaries never reach the allocator model: no estimate then
                     reserved_peak_bytes=None if memo and memo.replays else simulator.allocator.peak_reserved)


class SimulatedOutOfMemory(MemoryError):
    """A simulated cell's peak passes its GPU's usable memory (recorded ``oom``, with the peak)."""


def simulate_cell(cell, report) -> dict:
    """The measured fields of a simulated cell's record (``bench.worker.measure_cell`` for ``cell.simulate``):
    memory base and peak in CUDA allocator bytes, no time figures. ``report(fields)`` gets them before
    an over-the-GPU peak raises ``SimulatedOutOfMemory``."""
    from bench.env import environment
    from bench.workloads import _decoder_len
    from models import build

    gpu = parse_gpu(cell.simulate)
    torch.set_num_threads(cell.threads)
    handle = build(cell.family, cell.size, device="meta", **dict(cell.workload_args))
    handle.check_lengths(cell.input_len, _decoder_len(cell), cell.batch)
    token_ids = torch.load(cell.inputs).long() if cell.inputs else None
    record = {"env": environment("cpu", threads=torch.get_num_threads()), "produced_by": "simulation",
              "simulated_gpu": cell.simulate, "simulated_gpu_bytes": gpu.memory_bytes,
              "params_total": handle.params.total, "params_embedding": handle.params.embedding,
              "params_non_embedding": handle.params.non_embedding}
    report(record)
    sim = simulate_step(handle, lambda: handle.make_batch(cell.input_len, target_len=cell.target_len or 1,
                                                          batch_size=cell.batch, token_ids=token_ids),
                        cell.mode, new_tokens=cell.new_tokens or 1, dtype=cell.dtype)
    record.update(mem_base_bytes=sim.base_bytes, mem_peak_bytes=sim.base_bytes + sim.peak_bytes,
                  mem_peak_above_base_bytes=sim.peak_bytes, mem_reserved_bytes=sim.reserved_peak_bytes)
    report(record)
    if sim.base_bytes + sim.peak_bytes > gpu.usable_bytes:
        raise SimulatedOutOfMemory(
            f"simulated peak {(sim.base_bytes + sim.peak_bytes) / GiB:.2f} GiB ({sim.peak_bytes / GiB:.2f} "
            f"above the {sim.base_bytes / GiB:.2f} GiB base) > {gpu.usable_bytes / GiB:.2f} GiB usable on "
            f"{gpu.name} ({gpu.memory_bytes / GiB:.2f} GiB less {CUDA_CONTEXT_BYTES / GiB:g} GiB CUDA "
            "context)")
    return record


@dataclass(frozen=True)
class Capacity:
    """The longest input (tokens) of a model and mode that fits a GPU, found by ``longest_fitting``."""
    longest_ok: int | None  #: the longest length that fitted (None: not even the shortest)
    first_failure: int | None  #: the shortest length found not to fit (None: the longest tried fitted)
    peak_bytes: int | None  #: base + simulated peak at ``longest_ok``; bytes
    reason: str = ""  #: why ``first_failure`` does not fit (oom, or the model's length limit)


def longest_fitting(peak_at, usable_bytes: int, low: int = 1024, high: int = 4 * 2**20,
                    rel: float = 0.01, step: int = 1024) -> Capacity:
    """The longest length in [low, high] whose ``peak_at(length)`` (bytes, or a string saying why the
    length cannot run) is at most ``usable_bytes``, bracketed to within ``rel`` of the length or ``step``
    tokens: lengths double from ``low`` until one fails, then each probe goes where the power law through
    the bracket's two peaks reaches ``usable_bytes`` (``_probe_between``), or to the middle after two
    probes on one side of it.
    Assumes the peak grows with the length."""
    ok, ok_peak, bad, bad_peak, reason, length = None, None, None, None, "", low
    while length <= high:
        peak = peak_at(length)
        if isinstance(peak, str) or peak > usable_bytes:
            bad, bad_peak, reason = length, None if isinstance(peak, str) else peak, _why(peak)
            break
        ok, ok_peak = length, peak
        length = high if length < high < 2 * length else 2 * length
    sides: list[bool] = []  # per probe in the bracket: whether it fitted
    while ok is not None and bad is not None and bad - ok > max(step, rel * ok):
        stuck = len(sides) >= 2 and sides[-1] == sides[-2]  # the line missed twice on one side: halve
        middle = _probe_between(ok, ok_peak, bad, None if stuck else bad_peak, usable_bytes,
                                max(step, rel * ok), above=bool(sides) and sides[-1])
        peak = peak_at(middle)
        sides.append(not (isinstance(peak, str) or peak > usable_bytes))
        if sides[-1]:
            ok, ok_peak = middle, peak
        else:
            bad, bad_peak, reason = middle, None if isinstance(peak, str) else peak, _why(peak)
    return Capacity(ok, bad, ok_peak, reason)


def _why(peak) -> str:
    return peak if isinstance(peak, str) else "oom"


def _probe_between(ok: int, ok_peak: int, bad: int, bad_peak: int | None, usable: int, width: float,
                   above: bool) -> int:
    """A length strictly between ``ok`` and ``bad``, a multiple of 1,024 where it can be: the midpoint
    without ``bad_peak``; else where the power law through (ok, ok_peak) and (bad, bad_peak) reaches
    ``usable``, half a bracket ``width`` below it, or above it after a probe that fitted (so that, on a
    power law, two probes close the bracket)."""
    middle = (ok + bad) // 2
    targets = [middle // 1024 * 1024, middle]
    if bad_peak is not None:
        exponent = math.log(bad_peak / ok_peak) / math.log(bad / ok)  # peak ~ length^exponent between them
        target = ok * (usable / ok_peak) ** (1 / exponent) + (width / 2 if above else -width / 2)
        targets.insert(0, (math.ceil(target / 1024) if above else math.floor(target / 1024)) * 1024)
    return next(length for length in targets if ok < length < bad)
