"""Make tiny random models of each architecture df11 supports, with transformers' fp32 reference outputs.

Run where PyTorch and transformers are installed (the GPU host has them; no GPU is needed):
    python3 tools/make_reference_models.py OUT_DIR [NAME ...]
(only the NAMEs given, else all). For each model it writes OUT_DIR/<family>/bf16/{config.json, model.safetensors (BF16)} and
OUT_DIR/<family>/{reference.json (input_ids, greedy_fp32), reference_logits.safetensors (logits_fp32
[T, vocab])}, the layout of the official fixtures. The BF16 checkpoint is reloaded in float32 and run
with eager attention for the references.
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, Gemma3ForConditionalGeneration
from transformers import Gemma2Config, Gemma3Config, Gemma3TextConfig, MistralConfig, Phi3Config, Qwen2Config, Qwen3Config

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
    # Tied like Qwen3-0.6B/1.7B/4B: no lm_head.weight in the checkpoint.
    "qwen3-tied-tiny": Qwen3Config(**COMMON, head_dim=16, rope_theta=1000000.0, tie_word_embeddings=True),
}

# gemma-3 as the Hub releases store it (google/gemma-3-4b-it and its DFloat11 twin): Gemma3ForConditionalGeneration,
# tensors in the pre-4.52 layout (language_model.model.*, vision_tower.*, multi_modal_projector.*; lm_head tied),
# and a text_config that, like the Hub's, gives only what differs from Gemma3TextConfig's defaults (8 heads, 4 KV
# heads, query_pre_attn_scalar 256, rope_theta 1e6, rms_norm_eps, activation, … come from the class).
GEMMA3_VLM_CONFIG = {
    "architectures": ["Gemma3ForConditionalGeneration"],
    "model_type": "gemma3",
    "boi_token_index": 255999,
    "eoi_token_index": 256000,
    "image_token_index": 262144,
    "eos_token_id": [1, 106],
    "mm_tokens_per_image": 4,
    "text_config": {
        "model_type": "gemma3_text",
        "hidden_size": 64,
        "intermediate_size": 96,
        "num_hidden_layers": 2,
        "vocab_size": 256,
        "head_dim": 16,
        "sliding_window": 8,
        "sliding_window_pattern": 2,
        "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
    },
    "vision_config": {
        "model_type": "siglip_vision_model",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "image_size": 28,
        "patch_size": 14,
        "vision_use_head": False,
    },
    "torch_dtype": "bfloat16",
    "transformers_version": "4.50.0.dev0",
}
LEGACY_PREFIXES = [("model.language_model.", "language_model.model."), ("model.vision_tower.", "vision_tower."),
                   ("model.multi_modal_projector.", "multi_modal_projector."), ("lm_head.", "language_model.lm_head.")]

INPUT_IDS = [1, 17, 42, 99, 7, 200, 5, 64, 128, 3, 250, 11]


def perturb_norms(model):
    with torch.no_grad():
        for p in model.parameters():  # non-trivial norms too
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)


def save_causal_lm(config, bf16_dir):
    config._attn_implementation = "eager"
    model = AutoModelForCausalLM.from_config(config)
    perturb_norms(model)
    model.to(torch.bfloat16).save_pretrained(bf16_dir, safe_serialization=True)
    os.remove(os.path.join(bf16_dir, "generation_config.json"))


def save_gemma3_vlm(bf16_dir):
    config = Gemma3Config(**{k: v for k, v in GEMMA3_VLM_CONFIG.items() if k not in ("architectures", "torch_dtype", "transformers_version")})
    model = Gemma3ForConditionalGeneration(config)
    perturb_norms(model)
    state = {}
    for name, tensor in model.to(torch.bfloat16).state_dict().items():
        if name == "lm_head.weight":
            continue  # tied to the embedding
        for new, old in LEGACY_PREFIXES:
            if name.startswith(new):
                name = old + name[len(new):]
                break
        state[name] = tensor.contiguous()
    save_file(state, os.path.join(bf16_dir, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(bf16_dir, "config.json"), "w") as f:
        json.dump(GEMMA3_VLM_CONFIG, f, indent=2)


def main(out_dir, names):
    for name in names or [*CONFIGS, "gemma3-vlm-tiny"]:
        torch.manual_seed(0)
        d = os.path.join(out_dir, name)
        bf16_dir = os.path.join(d, "bf16")
        os.makedirs(bf16_dir, exist_ok=True)
        if name == "gemma3-vlm-tiny":
            save_gemma3_vlm(bf16_dir)
        else:
            save_causal_lm(CONFIGS[name], bf16_dir)
        # Reload the BF16 checkpoint in float32, as a user would: casting the in-memory model back and
        # forth would also round non-persistent buffers such as RoPE's inv_freq to BF16.
        model, info = AutoModelForCausalLM.from_pretrained(bf16_dir, dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"], info
        model.eval()
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
    main(sys.argv[1], sys.argv[2:])
