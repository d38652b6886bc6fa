#!/bin/sh
# Prepares, on this machine, what a lent GPU machine needs beside the checkout for benchmarks/gpu_check.sh:
# smplx and cdflib as wheels in .whl/ (the machine has its own CUDA torch and the rest), and the shared goldens and
# data the `gpu` tests and benchmarks read in device-shared/ (without the 45 MB of 3DPW arrays they never read).
# Both folders are ignored by git; name them in the device run's `carry`. Then, in one device run:
#
#   MESHCONF_SHARED=$PWD/device-shared sh benchmarks/gpu_check.sh
#
# (gpu_check.sh installs .whl/ itself and writes its results under $OUT.)
set -eu
cd "$(dirname "$0")/.."
SHARED=${MESHCONF_SHARED:-../shared}
for path in /.whl/ /device-shared/; do
    grep -qx "$path" .git/info/exclude 2>/dev/null || echo "$path" >> .git/info/exclude
done
rm -rf .whl device-shared
mkdir -p .whl device-shared/golden device-shared/data/meshconfidence
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl smplx==0.1.28 cdflib==1.3.16
# the goldens not already kept in tests/golden, and the data the tests and benchmarks open
for item in "$SHARED"/golden/*; do
    [ -e "tests/golden/$(basename "$item")" ] || cp -r "$item" device-shared/golden/
done
cp -r "$SHARED/data/spin" "$SHARED/data/meshcapade" device-shared/data/
cp -r "$SHARED/data/meshconfidence/examples" "$SHARED/data/meshconfidence/demo" device-shared/data/meshconfidence/
du -sh .whl device-shared
echo "carry: [\".whl\", \"device-shared\"]; the whole working tree must stay under 64 MiB"
