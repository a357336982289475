"""What the fork server imports once, so that no cell's worker pays for it (see ``bench.forkserver``).

Imported in the fork server process only (never by the runner): torch, transformers, every model
family, fvcore and the worker. It also fills the environment's caches (git commit, CPU model,
platform): the code the server imported is the code every forked cell runs, whatever happens to
the checkout later. It notes the library pages its imports made resident, which every child maps
again (``bench.forkserver.note_file_pages``). Last, ``gc.freeze()`` moves everything so far out of
the collector's reach, so that a child's ``gc.collect()`` (the memory tracker's, before the base)
neither walks nor copies the server's objects.
"""

import gc
import os
import platform

# torch.cuda.is_available() through NVML, not the CUDA driver: a child cannot use a driver its parent
# initialised before the fork (CUDA cells start by exec unless told otherwise; this keeps the server clean)
os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")

import fvcore.nn  # noqa: F401
import torch  # noqa: F401
import transformers  # noqa: F401

import bench.flops  # noqa: F401
import bench.forkserver
import bench.trackers  # noqa: F401
import bench.worker  # noqa: F401
import bench.workloads  # noqa: F401
import models  # noqa: F401
from bench.env import cpu_model, git_commit

git_commit()
cpu_model()
platform.platform()
bench.forkserver.note_file_pages()
gc.freeze()
