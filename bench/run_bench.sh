#!/usr/bin/env bash
# Side-by-side benchmark of libconure and the PyTorch peer on the T1 shapes of
# issue 3.  Prints JSON lines (one per measurement) on stdout; the figures and
# their reading are in docs/performance.md.  Needs a build dir with
# -Dbench=true (default) and, for the peer, Debian's python3-torch.
#   bench/run_bench.sh [BUILD_DIR] [THREADS]
# Run it on an otherwise idle machine: timings of a shared machine are noise.
set -euo pipefail
build=${1:-build}
threads=${2:-2}
peer=$(cd "$(dirname "$0")/../.." && pwd)/shared/peers/torch_nextitnet.py
bt="$build/bench/bench_train"
shape=(--vocab 3417 --channels 256 --dilations 1,4,1,4,1,4,1,4 --seq-len 50 --batch 64)
pshape=(--vocab 3417 --dim 256 --dilations 1,4,1,4,1,4,1,4 --seq-len 50 --batch 64)

echo "# conv kernels and raw BLIS SGEMM on the conv GEMM shapes"
"$build/bench/bench_conv" --threads "$threads" --reps 10 --backends blis --dilations 1,4
echo "# T1 training, full softmax, 3,417 items (peer: OpenBLAS SkylakeX kernel)"
"$bt" --mode train "${shape[@]}" --threads "$threads" --loss softmax --steps 20
BLIS_ARCH_TYPE=0 "$bt" --mode train "${shape[@]}" --threads "$threads" --loss softmax --steps 20
if [ -f "$peer" ] && /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 "$peer" "${pshape[@]}" --threads "$threads" --mode train
fi
echo "# inference: users/s (batch 64) and single-user top-10 latency"
"$bt" --mode infer "${shape[@]}" --threads "$threads" --steps 20
"$bt" --mode infer1 "${shape[@]}" --threads "$threads" --steps 200
if [ -f "$peer" ] && /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 "$peer" "${pshape[@]}" --threads "$threads" --mode infer
  OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 "$peer" "${pshape[@]}" --threads "$threads" --mode infer1 --steps 200
fi
echo "# 100,000-item catalogue: libconure sampled softmax (20% negatives) vs the peer's full softmax"
"$bt" --mode train --vocab 100000 --channels 256 --dilations 1,4,1,4,1,4,1,4 --seq-len 50 \
  --batch 64 --threads "$threads" --loss sampled_softmax --steps 10
"$bt" --mode train --vocab 100000 --channels 256 --dilations 1,4,1,4,1,4,1,4 --seq-len 50 \
  --batch 64 --threads "$threads" --loss softmax --steps 5 --warmup 1
if [ -f "$peer" ] && /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 "$peer" --vocab 100000 --dim 256 \
    --dilations 1,4,1,4,1,4,1,4 --seq-len 50 --batch 64 --threads "$threads" --mode train --steps 5 --warmup 1
fi
