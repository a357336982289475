#!/usr/bin/env bash
# On a machine with a CUDA GPU: the memory suite measured for real and simulated (bench.gpusim) on the same
# cells (every family, base, bf16 autocast, 4K and 16K, train and generate, dropout 0), printed side by side
# with the simulation's relative error, and their report (reports/out/gpu-check/report.html: the section
# "Simulated against measured GPU peaks", sim_vs_measured.csv). Usage: scripts/gpu_check.sh [GPU], GPU the one
# to simulate (default h100-80gb). Runs from the repository root with the project's environment; run
# directories under reports/out/gpu-check-*. The simulated cells run beside the real ones, on the CPU.
# Not yet run on a GPU (no GPU was lent to the session that wrote it).
set -euo pipefail
usage="usage: scripts/gpu_check.sh [GPU]  (GPU to simulate beside the real one: a bench.memory --simulate name, default h100-80gb)"
case "${1:-}" in
    -h|--help) echo "$usage"; exit 0 ;;
    -*) echo "$usage" >&2; echo "error: unknown option: $1" >&2; exit 2 ;;
esac
if [ $# -gt 1 ]; then echo "$usage" >&2; echo "error: one GPU name at most, got $#: $*" >&2; exit 2; fi
gpu="${1:-h100-80gb}"
# a bad GPU name is one error line from bench.memory's own check, before any cell runs
python -m bench.memory --simulate "$gpu" --models locost --sizes base --lengths 4k --dry-run >/dev/null
common=(--sizes base --lengths 4k,16k --modes train,generate --no-progress --no-report --out reports/out)
groups=("locost,locost-s4,longt5-tglobal,longt5-local,spade dropout_rate=0" "led,pegasus-x dropout=0")
simulate() {
    # simulated cells need no GPU: several at once on the host's cores (no time or RSS figure is taken), while
    # the real cells run (the README gives what a simulated cell costs)
    for models in "${groups[@]}"; do
        set -- $models
        python -m bench.memory --simulate "$gpu" --models "$1" --model-config "$2" --jobs 8 --allow-contention \
            --timeout 600 --run-id gpu-check-sim "${common[@]}"
    done
}
mkdir -p reports/out
simulate > reports/out/gpu-check-sim.log 2>&1 &
simulated=$!
for models in "${groups[@]}"; do
    set -- $models
    python -m bench.memory --device cuda --models "$1" --model-config "$2" --repeats 1 --warmup 0 \
        --no-flops --timeout 300 --run-id gpu-check-real "${common[@]}"
done
echo "waiting for the simulated cells (log: reports/out/gpu-check-sim.log)"
wait "$simulated"
PYTHONPATH=. python scripts/side_by_side.py reports/out/gpu-check-real reports/out/gpu-check-sim
python -m reports build reports/out/gpu-check-real reports/out/gpu-check-sim --out reports/out/gpu-check
