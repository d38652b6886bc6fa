#!/bin/sh
# The prepared GPU check (issue 13): on a machine with CUDA, install meshconf beside the machine's own CUDA torch,
# run the `gpu` tests (CUDA against the CPU, TF32 off) and short extract / sensitivity-dataset throughput runs, and
# write benchmarks/results/gpu_check.json (or $OUT/gpu_check.json). Budget: under 8 minutes from a bare machine.
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
$PY -m pytest -q -m gpu tests/test_engine.py tests/test_accel.py tests/test_openpose.py tests/test_gpu_jobs.py \
    -p no:cacheprovider \
    > "$OUTDIR/gpu_tests.log" 2>&1
tests_rc=$?
tail -3 "$OUTDIR/gpu_tests.log"
set -e
# the decode-on-device table (networks alone, each stage, extract with each decode path; fp32, TF32, bf16)
$PY benchmarks/gpu.py --json "$OUTDIR/gpu.json" 2>&1 | tee "$OUTDIR/gpu_table.log" | tail -22
$PY benchmarks/gpu_throughput.py --json "$OUTDIR/gpu_check.json" --tests-log "$OUTDIR/gpu_tests.log"
echo "gpu check done in $(( $(date +%s) - start )) s -> $OUTDIR/gpu_check.json"
exit $tests_rc
