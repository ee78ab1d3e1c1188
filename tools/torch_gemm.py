"""torch.nn.functional.linear (cuBLAS) BF16 on the Llama-3.1-8B prefill shapes, the reference of
apps/bench/src/gemm-kernels.ts: out[M, N] = X[M, K] · W[N, K]ᵀ, BF16 in and out (as transformers runs
prefill), median of CUDA-event timings per launch, TFLOP/s = 2·M·N·K / time.
Usage: python3 tools/torch_gemm.py OUT_JSON [M,M,...]
"""
import json
import sys

import torch

SHAPES = [("q|k|v", 6144, 4096), ("o", 4096, 4096), ("k", 1024, 4096), ("gate|up", 28672, 4096), ("down", 4096, 14336), ("lm_head", 128256, 4096)]


def main(out, ms=(128, 256, 512, 2048)):
    torch.manual_seed(0)
    dev = "cuda"
    rows = []
    for name, n, k in SHAPES:
        w = (torch.randn(n, k, device=dev) * (0.5 / k**0.5)).to(torch.bfloat16)
        for m in ms:
            x = torch.randn(m, k, device=dev).to(torch.bfloat16)
            for _ in range(5):
                torch.nn.functional.linear(x, w)
            torch.cuda.synchronize()
            times = []
            for _ in range(30):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                torch.nn.functional.linear(x, w)
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end))
            times.sort()
            t = times[len(times) // 2]
            rows.append({"matrix": name, "M": m, "N": n, "K": k, "us": t * 1000, "tflops": 2 * m * n * k / (t * 1e9)})
            print(f"{name:8} M={m:5} N={n:6} K={k:5}: {t * 1000:8.1f} us {rows[-1]['tflops']:6.1f} TFLOP/s", flush=True)
        del w
    result = {"engine": f"torch {torch.__version__} (cuBLAS), F.linear BF16 → BF16", "device": torch.cuda.get_device_name(), "shapes": rows}
    with open(out, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main(sys.argv[1], tuple(int(m) for m in sys.argv[2].split(",")) if len(sys.argv) > 2 else (128, 256, 512, 2048))
