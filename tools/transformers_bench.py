"""transformers BF16 generation on the GPU, the reference point of apps/bench gpu-generate: same model,
same prompt (token i = (i * 7919 + 13) % vocab), greedy, fixed number of new tokens.
Usage: python3 tools/transformers_bench.py MODEL_DIR PROMPT_TOKENS NEW_TOKENS OUT_JSON
"""
import json
import sys
import time

import torch
import transformers
from transformers import AutoModelForCausalLM


def main(model_dir, prompt_tokens, new_tokens, out):
    torch.cuda.reset_peak_memory_stats()
    t = time.time()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16, device_map="cuda")
    load_s = time.time() - t
    vocab = model.config.vocab_size
    ids = torch.tensor([[(i * 7919 + 13) % vocab for i in range(prompt_tokens)]], device="cuda")
    with torch.no_grad():
        for _ in range(2):  # warm-up
            model(ids)
        torch.cuda.synchronize()
        t = time.time()
        model(ids)
        torch.cuda.synchronize()
        prefill_s = time.time() - t
        model.generate(ids, max_new_tokens=8, min_new_tokens=8, do_sample=False)
        torch.cuda.synchronize()
        t = time.time()
        gen = model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
        torch.cuda.synchronize()
        total_s = time.time() - t
    decode_s = total_s - prefill_s
    result = {
        "engine": f"transformers {transformers.__version__} (torch {torch.__version__}), BF16",
        "loadSeconds": load_s,
        "prefillTokensPerSecond": prompt_tokens / prefill_s,
        "decodeTokensPerSecond": (new_tokens - 1) / decode_s,
        "peakGpuBytes": torch.cuda.max_memory_allocated(),
        "weightsBytes": sum(p.numel() * p.element_size() for p in model.parameters()),
        "tokenIds": gen[0, prompt_tokens:].tolist(),
    }
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps({k: v for k, v in result.items() if k != "tokenIds"}, indent=2))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
