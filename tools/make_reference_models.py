"""Make tiny random models of each architecture df11 supports, with transformers' fp32 reference outputs.

Run where PyTorch and transformers are installed (the GPU host has them; no GPU is needed):
    python3 tools/make_reference_models.py OUT_DIR
For each family it writes OUT_DIR/<family>/bf16/{config.json, model.safetensors (BF16)} and
OUT_DIR/<family>/{reference.json (input_ids, greedy_fp32), reference_logits.safetensors (logits_fp32
[T, vocab])}, the layout of the official fixtures. The BF16 checkpoint is reloaded in float32 and run
with eager attention for the references.
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM
from transformers import Gemma2Config, Gemma3TextConfig, MistralConfig, Phi3Config, Qwen2Config

COMMON = dict(vocab_size=256, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=256, bos_token_id=1, eos_token_id=2, pad_token_id=0)

CONFIGS = {
    # sliding_window 8 < prompt length, so the window mask matters
    "mistral-tiny": MistralConfig(**COMMON, head_dim=16, sliding_window=8, rope_theta=10000.0),
    "qwen2-tiny": Qwen2Config(**COMMON, rope_theta=1000000.0, tie_word_embeddings=False),
    "gemma2-tiny": Gemma2Config(**COMMON, head_dim=16, sliding_window=8, query_pre_attn_scalar=16,
                                attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
                                hidden_activation="gelu_pytorch_tanh"),
    "gemma3-tiny": Gemma3TextConfig(**COMMON, head_dim=16, sliding_window=8, query_pre_attn_scalar=16,
                                    layer_types=["sliding_attention", "full_attention"],
                                    rope_local_base_freq=10000.0, rope_theta=1000000.0),
    "phi3-tiny": Phi3Config(**COMMON, rope_theta=10000.0, tie_word_embeddings=False),
}

INPUT_IDS = [1, 17, 42, 99, 7, 200, 5, 64, 128, 3, 250, 11]


def main(out_dir):
    for name, config in CONFIGS.items():
        torch.manual_seed(0)
        config._attn_implementation = "eager"
        model = AutoModelForCausalLM.from_config(config)
        with torch.no_grad():
            for p in model.parameters():  # non-trivial norms too
                if p.dim() == 1:
                    p.add_(torch.randn_like(p) * 0.1)
        d = os.path.join(out_dir, name)
        bf16_dir = os.path.join(d, "bf16")
        os.makedirs(bf16_dir, exist_ok=True)
        model.to(torch.bfloat16).save_pretrained(bf16_dir, safe_serialization=True)
        os.remove(os.path.join(bf16_dir, "generation_config.json"))
        # Reload the BF16 checkpoint in float32, as a user would: casting the in-memory model back and
        # forth would also round non-persistent buffers such as RoPE's inv_freq to BF16.
        model = AutoModelForCausalLM.from_pretrained(bf16_dir, dtype=torch.float32, attn_implementation="eager").eval()
        ids = torch.tensor([INPUT_IDS])
        with torch.no_grad():
            logits = model(ids).logits[0].float().contiguous()
            seq = ids
            greedy = []
            for _ in range(16):
                nxt = int(model(seq).logits[0, -1].argmax())
                greedy.append(nxt)
                seq = torch.cat([seq, torch.tensor([[nxt]])], dim=1)
        save_file({"logits_fp32": logits}, os.path.join(d, "reference_logits.safetensors"))
        with open(os.path.join(d, "reference.json"), "w") as f:
            json.dump({"input_ids": INPUT_IDS, "greedy_fp32": greedy}, f, indent=1)
        print(name, "ok", greedy[:5])


if __name__ == "__main__":
    main(sys.argv[1])
