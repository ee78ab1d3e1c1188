"""What the official `dfloat11` loader (DFloat11Model.from_pretrained, 0.2.0-0.5.0) does with a DF11 model
directory, on the CPU, so CI can check that files df11 writes load correctly there. No GPU, no cupy, no
dfloat11 package: its steps are re-enacted here from their documented behaviour, and the one step that
needs its CUDA kernel (decoding a module) is done by a small sequential decoder of the DF11 format.

The steps: build the model from config.json with transformers, without initialising weights, in BF16,
and tie it (model.tie_weights()); parameters start as garbage (here: NaN, so anything never loaded
shows); then, for every tensor of every *.safetensors file in the directory: a name in the model's
state_dict is copied into it; any other tensor is registered as a buffer of the module its path names,
and a module that receives `encoded_exponent` gets a pre-forward hook that decodes it, while the
weights it replaces are deleted (a Linear's or Embedding's own weight, or the weights of the sub-modules
its pattern_dict entry lists). At each forward the hook decodes and injects the weights.

Usage: python tools/emulate_official_loader.py DF11_DIR BF16_DIR TOKEN_IDS(comma-separated) NEW_TOKENS
       python tools/emulate_official_loader.py --batch '[[DF11_DIR, BF16_DIR, "1,2,3", 8], ...]'
Prints JSON (one line; with --batch, a list): the largest logit difference to transformers on the BF16 original (both BF16, eager
attention, CPU), whether the logits are finite, both greedy continuations, and what could not be placed.
"""
import json
import os
import re
import sys

import torch
import torch.nn as nn
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForCausalLM

try:
    from transformers.initialization import no_init_weights  # transformers 5
except ImportError:
    from transformers.modeling_utils import no_init_weights  # transformers 4


def decode(luts, encoded, sign_mantissa):
    """Sequential DF11 decode (../shared/FORMAT.md): a 32-bit window at the current bit, looked up byte by
    byte through the LUT rows, advanced by the code length in the last row; returns BF16 bits as int16."""
    luts = luts.tolist()
    lengths = luts[-1]
    data = bytes(encoded.tolist()) + b"\0" * 5
    sm = sign_mantissa.tolist()
    out = [0] * len(sm)
    bit = 0
    for i, s in enumerate(sm):
        byte, offset = bit >> 3, bit & 7
        window = (int.from_bytes(data[byte:byte + 5], "big") >> (8 - offset)) & 0xFFFFFFFF
        row, shift = 0, 24
        value = luts[row][(window >> shift) & 0xFF]
        while value >= 240:
            row, shift = 256 - value, shift - 8
            value = luts[row][(window >> shift) & 0xFF]
        bit += lengths[value]
        bits = ((s & 0x80) << 8) | (value << 7) | (s & 0x7F)
        out[i] = bits - 0x10000 if bits >= 0x8000 else bits
    return torch.tensor(out, dtype=torch.int16).view(torch.bfloat16)


def decode_hook(module, _inputs):
    # The official hook decodes at every forward; the result is the same each time, so decode once here.
    if not hasattr(module, "_emulated_weights"):
        module._emulated_weights = decode(module.luts, module.encoded_exponent, module.sign_mantissa)
    weights = module._emulated_weights
    if isinstance(module, nn.Linear):
        module.weight = weights.view(module.out_features, module.in_features)
    elif isinstance(module, nn.Embedding):
        module.weight = weights.view(module.num_embeddings, module.embedding_dim)
    else:
        for target, part in zip(module.weight_injection_modules, torch.tensor_split(weights, module.split_positions)):
            target.weight = part.view(target.out_features, target.in_features)


def load_like_official(directory, attn):
    config = AutoConfig.from_pretrained(directory)
    with no_init_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16, attn_implementation=attn)
        model.tie_weights()
        model.eval()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))  # uninitialised memory, made visible
    pattern_dict = config.dfloat11_config["pattern_dict"]
    unplaced, mismatched, decoded = [], [], 0
    for file_name in sorted(f for f in os.listdir(directory) if f.endswith(".safetensors")):
        for name, value in load_file(os.path.join(directory, file_name)).items():
            state = model.state_dict()
            if name in state:
                target = dict(model.named_parameters()).get(name)
                target = target if target is not None else dict(model.named_buffers())[name]
                if target.shape != value.shape:
                    mismatched.append(name)
                else:
                    with torch.no_grad():
                        target.copy_(value)
                continue
            *path, leaf = name.split(".")
            module = model
            for part in path:
                if not hasattr(module, part):
                    unplaced.append(name)
                    break
                module = getattr(module, part)
            else:
                if leaf == "split_positions":
                    module.split_positions = value.tolist()
                else:
                    module.register_buffer(leaf, value)
                if leaf == "encoded_exponent":
                    decoded += 1
                    module.register_forward_pre_hook(decode_hook)
                    for pattern, subs in pattern_dict.items():
                        if re.fullmatch(pattern, ".".join(path)):
                            if isinstance(module, (nn.Linear, nn.Embedding)):
                                del module.weight
                            else:
                                module.weight_injection_modules = []
                                for sub in subs:
                                    target = module.get_submodule(sub)
                                    del target.weight
                                    module.weight_injection_modules.append(target)
    return model, {"unplaced": unplaced, "shapeMismatches": mismatched, "decodedModules": decoded}


def run(model, ids, new_tokens):
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
        out = model.generate(torch.tensor([ids]), max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    return logits, out[0, len(ids):].tolist()


def compare(df11_dir, bf16_dir, ids, new_tokens):
    ids = [int(t) for t in str(ids).split(",")]
    official, placement = load_like_official(df11_dir, "eager")
    reference = AutoModelForCausalLM.from_pretrained(bf16_dir, dtype=torch.bfloat16, attn_implementation="eager").eval()
    a, tokens_a = run(official, ids, int(new_tokens))
    b, tokens_b = run(reference, ids, int(new_tokens))
    finite = bool(torch.isfinite(a).all())
    diff = float((a - b).abs().max()) if finite else None
    return {"model": df11_dir, "maxLogitDifference": diff, "finite": finite, "greedyOfficial": tokens_a, "greedyReference": tokens_b, **placement}


if __name__ == "__main__":
    if sys.argv[1] == "--batch":
        print(json.dumps([compare(*job) for job in json.loads(sys.argv[2])]))
    else:
        print(json.dumps(compare(*sys.argv[1:5])))
