#!/usr/bin/env bash
# The GPU check: run it on a CUDA machine when one is available (never in CI).
#
#   bench/gpu_check.sh           # from a checkout with the project installed in a CUDA build of torch
#   QUICK=1 bench/gpu_check.sh   # the benchmarks in their --quick mode
#
# 1. The core tests with every model on the GPU, in fp16 and then in bf16: MMSTUDIO_DEVICE and
#    MMSTUDIO_DTYPE set the defaults of every LoadOptions, so the engine, the CLI and the worker all follow.
# 2. Benchmarks 1-3 of docs/benchmarks.md on the GPU in fp16.
# DEVICE=cpu runs the same steps on the CPU (how the script itself is checked on machines without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
python - "$DEVICE" <<'PY'
import sys, torch
if sys.argv[1].startswith("cuda") and not torch.cuda.is_available():
    sys.exit(f"gpu_check: torch {torch.__version__} sees no CUDA device")
print("torch", torch.__version__, "on", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")
PY
# The parity tests (test_blip_parity, test_families) compare with plain transformers in fp32 on the CPU by
# design, so they are not in this list.
CORE_TESTS=(tests/test_model_loading.py tests/test_cli.py tests/test_cli_families.py tests/test_search.py)
for dtype in fp16 bf16; do
    echo "== core tests on $DEVICE in $dtype"
    MMSTUDIO_DEVICE=$DEVICE MMSTUDIO_DTYPE=$dtype python -m pytest -q -p no:cacheprovider "${CORE_TESTS[@]}"
done
echo "== the built-in models' figures on $DEVICE in fp16 and bf16 (200 fresh scenes)"
SCENES=$(mktemp -d)
trap 'rm -rf "$SCENES"' EXIT
mmstudio world generate --out "$SCENES" --count 200 --seed 4242 >/dev/null
for dtype in fp32 fp16 bf16; do
    for task in caption vqa itm; do
        echo "-- $task $dtype: $(mmstudio eval --task $task --data "$SCENES" --device "$DEVICE" --dtype $dtype --json \
            | python -c 'import json,sys; m=json.load(sys.stdin)["metrics"]; print({k: round(v, 3) for k, v in m.items() if isinstance(v, float)})')"
    done
done
for bench in caption_throughput vqa_followup match_texts; do
    echo "== bench/$bench.py on $DEVICE in fp16"
    python "bench/$bench.py" --device "$DEVICE" --dtype fp16 ${QUICK:+--quick}
done
