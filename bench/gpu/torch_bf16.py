#!/usr/bin/env python3
"""bf16 torch.matmul baseline (cuBLAS / rocBLAS) at the shapes of native/gpu/bench/bench_gpu.cu.

    python3 bench/gpu/torch_bf16.py [--iters 7] [--warmup 3] [--quick] [--ms 1,256] [--kn 3072x3072]

Times Y = X @ W^T + b in bf16 with CUDA events (torch.cuda works on ROCm too), median of >= 5 runs
after warm-up, and prints a Markdown table and one JSON line per shape with the fields of
bench_gpu's lines ("bench": "torch_bf16", "mode": "dense", "rank": 0), so that the two outputs can
be joined on (m, k, n) to compute the speed-up.
"""
import argparse
import json
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--ms", help="token counts, comma-separated")
    ap.add_argument("--kn", help="KxN shapes, comma-separated")
    a = ap.parse_args()
    try:
        import torch
    except ImportError as e:
        print(f"no torch: {e} — baseline skipped")
        return 0
    if not torch.cuda.is_available():
        print("no GPU: torch.cuda.is_available() is False — baseline skipped")
        return 0
    dev = torch.device("cuda")
    name = torch.cuda.get_device_name(0)
    platform = "hip" if getattr(torch.version, "hip", None) else "cuda"
    ms_list = [1, 256] if a.quick else [1, 256, 1024, 4096]
    shapes = [(3072, 3072)] if a.quick else [(3072, 3072), (3072, 12288), (12288, 3072)]
    if a.ms:
        ms_list = [int(v) for v in a.ms.split(",")]
    if a.kn:
        shapes = [tuple(int(v) for v in s.split("x")) for s in a.kn.split(",")]
    iters = max(5, a.iters)
    print(f"# bf16 torch.matmul baseline — {name} ({platform})\n")
    print("| M | K | N | median ms | TFLOPS |\n|---|---|---|---|---|")
    lines = []
    for k, n in shapes:
        w = torch.randn(n, k, device=dev, dtype=torch.bfloat16)
        b = torch.randn(n, device=dev, dtype=torch.bfloat16)
        for m in ms_list:
            x = torch.randn(m, k, device=dev, dtype=torch.bfloat16)
            for _ in range(a.warmup):
                torch.nn.functional.linear(x, w, b)
            times = []
            for _ in range(iters):
                s = torch.cuda.Event(enable_timing=True)
                e = torch.cuda.Event(enable_timing=True)
                s.record()
                torch.nn.functional.linear(x, w, b)
                e.record()
                e.synchronize()
                times.append(s.elapsed_time(e))
            times.sort()
            med = times[len(times) // 2]
            tflops = 2.0 * m * k * n / (med * 1e-3) / 1e12
            print(f"| {m} | {k} | {n} | {med:.4f} | {tflops:.1f} |")
            lines.append(json.dumps({"bench": "torch_bf16", "platform": platform, "device": name, "scheme": "bf16",
                                     "m": m, "k": k, "n": n, "rank": 0, "mode": "dense",
                                     "median_ms": round(med, 5), "runs": iters, "tops": round(tflops, 3)}))
    print()
    for l in lines:
        print(l)
    return 0


if __name__ == "__main__":
    sys.exit(main())
