"""The cuBLAS floor of a BF16 decode step on this GPU: every matrix-vector product of one token of a
Llama-3.1-8B-shaped model (32 layers of q|k|v, o, gate|up, down with weights of their own, and lm_head),
through torch (cuBLAS), BF16, batch 1, replayed as one CUDA graph. Nothing else of the step (attention,
norms) is counted: an engine's decode step can only be slower. Also the device-to-device copy bandwidth.
Usage: python3 tools/cublas_floor.py OUT_JSON [ROWS]
"""
import json
import sys

import torch


def main(out, rows=1):
    torch.manual_seed(0)
    dev = "cuda"
    H, I, L, V = 4096, 14336, 32, 128256
    shapes = [(6144, H), (H, H), (2 * I, H), (H, I)]
    weights = [[(torch.randn(n, k, device=dev) * (0.5 / k**0.5)).to(torch.bfloat16) for n, k in shapes] for _ in range(L)]
    lm_head = (torch.randn(V, H, device=dev) * (0.5 / H**0.5)).to(torch.bfloat16)
    xs = {k: torch.randn(rows, k, device=dev).to(torch.bfloat16) for k in (H, I)}
    outs = {}

    def step():
        for layer in weights:
            for w in layer:
                outs[w.shape] = torch.nn.functional.linear(xs[w.shape[1]], w)
        outs["lm"] = torch.nn.functional.linear(xs[H], lm_head)

    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    for _ in range(5):
        graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(30):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    ms = times[len(times) // 2]
    weight_bytes = sum(w.numel() * 2 for layer in weights for w in layer) + lm_head.numel() * 2
    a = torch.empty(1 << 31, dtype=torch.uint8, device=dev)
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    torch.cuda.synchronize()
    copies = []
    for _ in range(10):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        b.copy_(a)
        end.record()
        end.synchronize()
        copies.append(start.elapsed_time(end))
    copies.sort()
    result = {
        "engine": f"torch {torch.__version__} (cuBLAS), BF16, every GEMV of a token in one CUDA graph",
        "device": torch.cuda.get_device_name(),
        "rows": rows,
        "msPerToken": ms,
        "tokensPerSecond": 1000 / ms,
        "weightBytes": weight_bytes,
        "weightGBps": weight_bytes / ms / 1e6,
        "deviceCopyGBps": 2 * a.numel() / copies[len(copies) // 2] / 1e6,
    }
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1)
