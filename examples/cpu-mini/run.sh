#!/usr/bin/env bash
# The whole method at CPU scale on real CIFAR-100: a ResNet32 teacher, then ResNet8 students with
# cross-entropy, KD, Energy KD and Energy KD + HE-DA (50%), 15 epochs each, then one comparison
# table. About 1.5 hours on 2 CPU cores; a GPU does it in minutes.
#
#   bash examples/cpu-mini/run.sh [path/to/cifar100.npz]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
data="$(realpath "${1:-$here/../../../shared/data/cifar100.npz}")"
cd "$here"
ekd train --model resnet32 --data-root "$data" --run-name mini-teacher-resnet32
for method in ce kd energy_kd; do
  ekd distill --method "$method" --data-root "$data" --run-name "mini-$method"
done
ekd distill --method energy_kd --augment he-cutmix --rate 0.5 --data-root "$data" --run-name mini-energy_kd-he_cutmix50
ekd evaluate ekd-store/runs/mini-ce ekd-store/runs/mini-kd ekd-store/runs/mini-energy_kd \
  ekd-store/runs/mini-energy_kd-he_cutmix50 --data-root "$data"
