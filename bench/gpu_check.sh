#!/usr/bin/env bash
# The GPU check: run it on a CUDA machine when one is available (never in CI).
#
#   bench/gpu_check.sh           # from a checkout with the project installed in a CUDA build of torch
#   QUICK=1 bench/gpu_check.sh   # the benchmarks in their --quick mode
#
# 1. The core tests with every model on the GPU, in fp16 and then in bf16: MMSTUDIO_DEVICE and
#    MMSTUDIO_DTYPE set the defaults of every LoadOptions, so the engine, the CLI and the worker all follow.
# 2. The built-in models' figures in fp32, fp16 and bf16 (and int8 where DEVICE=cpu), and how many single
#    outputs each precision changes against fp32 (bench/precision_agreement.py).
# 3. The torchrun path: captions of 200 scenes by one process per GPU (two on a CPU) against one process.
# 4. Benchmarks 1-3 of docs/benchmarks.md on the GPU in fp16.
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
DTYPES="fp32 fp16 bf16"
[ "$DEVICE" = cpu ] && DTYPES="fp32 bf16 int8"  # fp16 is slow on most CPUs; int8 is the CPU's only
for dtype in $DTYPES; do
    for task in caption vqa itm; do
        echo "-- $task $dtype: $(mmstudio eval --task $task --data "$SCENES" --device "$DEVICE" --dtype $dtype --json \
            | python -c 'import json,sys; m=json.load(sys.stdin)["metrics"]; print({k: round(v, 3) for k, v in m.items() if isinstance(v, float)})')"
    done
done
echo "== single outputs that change with the precision, against fp32 on $DEVICE"
python bench/precision_agreement.py --data "$SCENES" --device "$DEVICE" --dtypes "$(echo ${DTYPES#fp32 } | tr " " ,)"
echo "== torchrun: one process per GPU (two on a CPU) gives one process's captions, in input order"
PROCESSES=$(python -c 'import sys, torch; print(torch.cuda.device_count() if sys.argv[1] != "cpu" else 2)' "$DEVICE")
mmstudio caption "$SCENES/images" --device "$DEVICE" --out "$SCENES/one.jsonl"
TMPDIR="$SCENES" torchrun --standalone --nproc_per_node="$PROCESSES" -m mmstudio caption "$SCENES/images" --device "$DEVICE" \
    --out "$SCENES/many.jsonl"
python - "$SCENES/one.jsonl" "$SCENES/many.jsonl" <<'PY'
import json, sys
one, many = ([json.loads(line) for line in open(path)] for path in sys.argv[1:])
assert [r["image"] for r in one] == [r["image"] for r in many], "torchrun: not the same images in the same order"
same = sum(a["caption"] == b["caption"] for a, b in zip(one, many))
print(f"torchrun: {len(many)} captions in input order, {same} identical to one process's")
PY
for bench in caption_throughput vqa_followup match_texts; do
    echo "== bench/$bench.py on $DEVICE in fp16"
    python "bench/$bench.py" --device "$DEVICE" --dtype fp16 ${QUICK:+--quick}
done
