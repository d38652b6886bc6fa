#!/bin/sh
# The prepared GPU check: on a machine with CUDA, install meshconf beside the machine's own CUDA torch, run the `gpu`
# tests (CUDA against the CPU, TF32 off for every job), then benchmarks/gpu.py (each stage, extract serial and
# pipelined, the original structure, dataset sensitivity, the demo's path; fp32, TF32, bf16), writing
# benchmarks/results/gpu.json (or $OUT/gpu.json) with the tests' last lines. Budget: under 9 minutes from a bare
# machine (GPU_BENCH_ARGS shortens the benchmark).
#
#   sh benchmarks/gpu_check.sh            # from the repository root; ../shared or $MESHCONF_SHARED must be there
#
# The machine's python3 must already hold a CUDA torch (pip would otherwise fetch the CPU pin). Packages it lacks
# (smplx, cdflib) travel as wheels in .whl/ (see the device tool's README); they are installed with --no-deps.
set -eu
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUTDIR=${OUT:-benchmarks/results}
mkdir -p "$OUTDIR" /tmp/site
if ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
fi
export PYTHONPATH="$PWD:/tmp/site:${PYTHONPATH:-}"
export PYTHONUNBUFFERED=1
$PY - <<'PY'
import torch, sys
assert torch.cuda.is_available(), "no CUDA device visible"
print("torch", torch.__version__, "on", torch.cuda.get_device_name(0), file=sys.stderr)
PY
start=$(date +%s)
set +e
$PY -m pytest -q -m gpu tests/test_engine.py tests/test_accel.py tests/test_openpose.py tests/test_runner.py tests/test_gpu_jobs.py \
    -p no:cacheprovider \
    > "$OUTDIR/gpu_tests.log" 2>&1
tests_rc=$?
tail -3 "$OUTDIR/gpu_tests.log"
set -e
# shellcheck disable=SC2086  # GPU_BENCH_ARGS is a list of options
$PY benchmarks/gpu.py --json "$OUTDIR/gpu.json" --tests-log "$OUTDIR/gpu_tests.log" ${GPU_BENCH_ARGS:-} 2>&1 \
    | tee "$OUTDIR/gpu_table.log" | tail -45
echo "gpu check done in $(( $(date +%s) - start )) s -> $OUTDIR/gpu.json"
exit $tests_rc
