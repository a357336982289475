"""Measurement engine: how one cell is measured in its own process and a sweep of cells recorded.

Each cell is measured in its own process (``bench.worker``, spoken to through ``bench.protocol``) and
ends as one ``records.Record`` in ``<run-dir>/results.jsonl``. The engine imports ``records`` and
``models`` only. A map, in the order to read it:

The engine, one way down
- ``settings``: how cells are measured, each setting declared once (``Measurement`` for the worker,
  ``Supervision`` for the runner), carried as one ``Settings`` from the suite and its flags.
- ``cells``: ``Cell``, one measured configuration (model, size, mode, lengths, batch, dtype, device).
- ``sweep``: ``run_sweep`` (pending cells, dispatch, resume, one record each into the run directory).
- ``executors``: where a sweep's cells run: here one at a time, here N at once, or submitit/Slurm.
- ``runner``: ``run_cell``, a worker process watched for its memory budget and time limit.
- ``protocol``: the files between the runner and a worker (``WorkerSpec`` in, ``WorkerResult`` out).
- ``worker``: the child process of one cell: prepares the workload, warms up, measures, writes back.
- ``workloads``: what a cell runs (the model's train/encode/generate step, or a synthetic check).
- ``trackers``: memory and time of one measured step (host RSS, CUDA peak, NVML, timers).
- ``results``: the run directory's files (results.jsonl, results.csv, run.json, flops.jsonl).
- ``env``: the environment stored with every record.
- ``flops``: a step's FLOPs (fvcore plus each family's analytic counts).
- ``gpusim`` with ``cuda_autocast``: a GPU cell without a GPU (fake tensors, allocator rules).
- ``signals``: Ctrl-C and SIGTERM noted, raised at a safe point (simulated steps, capacity probes).
- ``allocator``: the CUDA caching allocator modelled (reserved beside allocated), fed by ``gpusim``.
- ``forkserver`` with ``preload``: workers forked from a server with torch and the models imported.

Entry points (two-line shims kept for the user's commands; each hands over to its program in ``cli``)
- ``memory``, ``throughput``: ``python -m bench.memory`` / ``bench.throughput`` -> ``cli.sweep``.
- ``scaling``: ``python -m bench.scaling`` -> ``cli.scaling``.
- ``rouge``: ``python -m bench.rouge`` -> ``cli.rouge``.
- ``capacity``: ``python -m bench.capacity`` -> ``cli.capacity``.

One name, three layers: ``bench/scaling.py`` is the command, ``cli/scaling.py`` its program (arguments,
printed table) and ``suites/scaling.py`` the suite's data (models, lengths, settings per device); the
same holds for ``memory`` and ``throughput`` (their program is the shared ``cli.sweep``) and ``rouge``
(``suites/rouge/``, the quality pipeline).
"""

from bench.cells import DTYPES, MODES, STATUSES, Cell
from bench.runner import run_cell
from bench.settings import Measurement, Settings, Supervision
from bench.sweep import run_sweep

__all__ = ["DTYPES", "MODES", "STATUSES", "Cell", "Measurement", "Settings", "Supervision", "run_cell",
           "run_sweep"]
