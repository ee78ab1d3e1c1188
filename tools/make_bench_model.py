"""Writes a Llama-3.1-8B-shaped BF16 model (hidden 4096, intermediate 14336, 32 layers, 32/8 heads,
vocab 128256) with synthetic weights drawn like a trained model's (normal, std 1/sqrt(fan_in)/2, 0.05 %
outliers x8: the same statistics as @df11/codec's syntheticWeights), in 4 safetensors shards + index.
Generated on the GPU with torch (16 GB in seconds). Usage: python3 tools/make_bench_model.py OUT_DIR [70b-slice]
70b-slice: Llama-3.1-70B's shapes (hidden 8192, intermediate 28672, 64/8 heads) with 4 layers: 1.7 GB
per layer module, for memory-bound compress/decompress at scale.
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file

SHAPES = {"8b": (4096, 14336, 32, 32, 8, 128256), "70b-slice": (8192, 28672, 4, 64, 8, 128256)}
H, I, L, NH, NKV, V = SHAPES[sys.argv[2] if len(sys.argv) > 2 else "8b"]
HD = H // NH


def weight(rows, cols, gen):
    w = torch.randn(rows, cols, device="cuda", generator=gen, dtype=torch.float32) * (0.5 / cols**0.5)
    outliers = torch.rand(rows, cols, device="cuda", generator=gen) < 0.0005
    w[outliers] *= 8
    return w.to(torch.bfloat16).cpu()


def norm(size, gen):
    return (1 + 0.05 * torch.randn(size, device="cuda", generator=gen)).to(torch.bfloat16).cpu()


def main(out):
    os.makedirs(out, exist_ok=True)
    gen = torch.Generator(device="cuda").manual_seed(1)
    shards = [{} for _ in range(4)]
    shards[0]["model.embed_tokens.weight"] = weight(V, H, gen)
    for l in range(L):
        s = shards[min(3, 1 + l * 3 // L)] if l else shards[0]
        p = f"model.layers.{l}"
        s[f"{p}.self_attn.q_proj.weight"] = weight(NH * HD, H, gen)
        s[f"{p}.self_attn.k_proj.weight"] = weight(NKV * HD, H, gen)
        s[f"{p}.self_attn.v_proj.weight"] = weight(NKV * HD, H, gen)
        s[f"{p}.self_attn.o_proj.weight"] = weight(H, NH * HD, gen)
        s[f"{p}.mlp.gate_proj.weight"] = weight(I, H, gen)
        s[f"{p}.mlp.up_proj.weight"] = weight(I, H, gen)
        s[f"{p}.mlp.down_proj.weight"] = weight(H, I, gen)
        s[f"{p}.input_layernorm.weight"] = norm(H, gen)
        s[f"{p}.post_attention_layernorm.weight"] = norm(H, gen)
    shards[3]["model.norm.weight"] = norm(H, gen)
    shards[3]["lm_head.weight"] = weight(V, H, gen)
    index = {"metadata": {"total_size": 0}, "weight_map": {}}
    for i, tensors in enumerate(shards):
        name = f"model-{i + 1:05d}-of-00004.safetensors"
        save_file(tensors, os.path.join(out, name), metadata={"format": "pt"})
        for k, t in tensors.items():
            index["weight_map"][k] = name
            index["metadata"]["total_size"] += t.numel() * 2
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": V,
        "hidden_size": H,
        "intermediate_size": I,
        "num_hidden_layers": L,
        "num_attention_heads": NH,
        "num_key_value_heads": NKV,
        "head_dim": HD,
        "hidden_act": "silu",
        "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "bos_token_id": 128000,
        "eos_token_id": 128001,
        "attention_bias": False,
        "mlp_bias": False,
    }
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    print(f"wrote {index['metadata']['total_size'] / 1e9:.2f} GB to {out}")


if __name__ == "__main__":
    main(sys.argv[1])
