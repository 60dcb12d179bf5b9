#!/usr/bin/env bash
# The cpu-mini campaign (README.md): a ResNet20 teacher on real CIFAR-100, then 12 student variants
# (ce, kd, dkd, energy_kd official and paper, energy_dkd, kd + HE-DA 50 %, kd + random CutMix 50 %,
# fitnet, at, crd, reviewkd) x 3 seeds with `ekd sweep`, then `ekd report`.  About an hour on 2 busy
# CPU cores.
#
#   bash examples/cpu-mini/run.sh [path/to/cifar100.npz] [store]
#
# Run it again after an interruption: the teacher is kept, finished runs are skipped and
# interrupted ones resume from their checkpoints.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
data="$(realpath "${1:-$here/../../../shared/data/cifar100.npz}")"
store="$(realpath -m "${2:-$here/ekd-store}")"
# One thread per process: on a shared machine more threads per process run slower, not faster.
export EKD_NUM_THREADS=1 OMP_NUM_THREADS=1
if [ ! -f "$store/models/cifar100/resnet20.safetensors" ]; then
  ekd train --config "$here/teacher.toml" --data-root "$data" --store "$store" --run-name cpu-mini-teacher \
    || ekd train --resume "$store/runs/cpu-mini-teacher"
fi
ekd sweep "$here"/campaign/*.toml --name cpu-mini --seeds 0,1,2 --jobs 2 --set data_root="$data" --store "$store"
ekd report cpu-mini --store "$store" --out "$here/results"
python "$here/results.py" "$here/results/report.json" --store "$store" > "$here/RESULTS.md"
