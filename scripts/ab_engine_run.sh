#!/usr/bin/env bash
# The A/B commands of issue 25 (an engine refactor must not change records): run from a checkout's root,
#   scripts/ab_engine_run.sh OUT      (then: python scripts/ab_engine_compare.py OUT_A OUT_B)
# a tiny memory sweep with FLOPs, a tiny ROUGE run (ACLSum, offline) and a combined report of the two,
# all with fixed run ids, on CPU with 1 thread.
set -euo pipefail
out=${1:?usage: scripts/ab_engine_run.sh OUT}
py=${PYTHON:-python}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
"$py" -m bench.memory --models locost,longt5-local --sizes tiny --modes train,encode --lengths 512,1k \
    --flops --device cpu --threads 1 --repeats 1 --warmup 0 --run-id ab --out "$out" --no-report --no-progress
"$py" -m bench.rouge --models locost --size tiny --steps 2 --batch-size 1 --train-len 192 --target-len 64 \
    --warmup-steps 1 --gsg-steps 0 --eval-lens 128,256 --eval-docs 3 --max-new-tokens 8 --vocab-size 500 \
    --curve-every 0 --device cpu --threads 1 --run-id ab-rouge --out "$out" --cache-dir "$out/cache" \
    --no-report --no-progress
"$py" -m reports build "$out/ab" "$out/ab-rouge" --out "$out/report"
