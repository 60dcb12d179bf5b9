"""How fast a distillation step could possibly be here: the pair's multiply-adds at this CPU's peak.

Counts the multiply-adds of a teacher forward and a student forward + backward (backward ~ 2x
forward) per image, measures this machine's bf16 (and fp32) matrix-multiply peak with one large
GEMM, and the teacher's bf16 forward, all in one run.  Dividing gives the most images/s any
exact training step can reach, to compare with the reference loop's measured images/s
(``benchmarks/engine.py``): it bounds what an engine can gain without skipping teacher work.

    python benchmarks/roofline.py --teacher resnet32x4 --student resnet8x4 --reference 51.2
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from ekdcli.jobs.build import build_model


def multiply_adds(model: torch.nn.Module, image: torch.Tensor) -> int:
    """Multiply-adds of convolutions and linear layers for one image."""
    total = 0

    def count(module: torch.nn.Module, _inputs: object, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            per_output = (module.in_channels // module.groups) * module.kernel_size[0] * module.kernel_size[1]
            total += output[0].numel() * per_output
        elif isinstance(module, torch.nn.Linear):
            total += module.in_features * module.out_features

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    with torch.no_grad():
        model(image)
    for hook in hooks:
        hook.remove()
    return total


def median_seconds(work: Callable[[], object], repeats: int) -> float:
    work()  # warm-up: allocation and kernel choice
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def gemm_flops(dtype: torch.dtype, size: int, repeats: int) -> float:
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    return 2 * size**3 / median_seconds(lambda: a @ b, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", default="resnet32x4")
    parser.add_argument("--student", default="resnet8x4")
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--reference", type=float, help="the reference loop's images/s, for the ratio")
    args = parser.parse_args()

    image = torch.randn(1, 3, 32, 32)
    teacher = build_model(args.teacher, args.classes, 3).eval()
    student = build_model(args.student, args.classes, 3)
    teacher_mac = multiply_adds(teacher, image)
    student_mac = multiply_adds(student.eval(), image)
    step_flops = 2 * (teacher_mac + 3 * student_mac)  # teacher forward; student forward + backward

    peak = {
        "bf16": gemm_flops(torch.bfloat16, 2048, args.repeats),
        "fp32": gemm_flops(torch.float32, 2048, args.repeats),
    }
    batch = torch.randn(args.batch_size, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    teacher = teacher.to(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        teacher_s = median_seconds(lambda: teacher(batch), args.repeats)
    achieved = 2 * teacher_mac * args.batch_size / teacher_s

    print(f"{torch.get_num_threads()} threads, batch {args.batch_size}")
    print(f"{args.teacher}: {teacher_mac / 1e9:.3f} G multiply-adds per image (forward)")
    print(f"{args.student}: {student_mac / 1e9:.3f} G multiply-adds per image (forward; x3 with backward)")
    print(f"one distillation step: {step_flops / 1e9:.2f} GFLOP per image")
    for name, flops in peak.items():
        line = f"{name} GEMM peak {flops / 1e9:6.0f} GFLOPS -> at most {flops / step_flops:6.1f} images/s"
        if args.reference:
            line += f" = {flops / step_flops / args.reference:.2f}x the reference"
        print(line)
    print(
        f"{args.teacher} bf16 forward, batch {args.batch_size}: {teacher_s:.3f} s = {achieved / 1e9:.0f} GFLOPS "
        f"({100 * achieved / peak['bf16']:.0f}% of the bf16 GEMM peak)"
    )


if __name__ == "__main__":
    main()
