"""Peer check with transformers (CPU, float32): loads two model directories, runs the same prompt through
both, prints JSON with the largest logit difference between them and each one's greedy tokens.
Usage: python tools/peer_transformers.py ORIGINAL_DIR OTHER_DIR TOKEN_IDS(comma-separated) NEW_TOKENS
"""
import json
import sys

import torch
from transformers import AutoModelForCausalLM


def run(directory, ids, new_tokens):
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
        out = model.generate(torch.tensor([ids]), max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    return logits, out[0, len(ids):].tolist()


def main(original, other, ids, new_tokens):
    ids = [int(t) for t in ids.split(",")]
    a, tokens_a = run(original, ids, int(new_tokens))
    b, tokens_b = run(other, ids, int(new_tokens))
    print(json.dumps({"maxLogitDifference": float((a - b).abs().max()), "greedyOriginal": tokens_a, "greedyOther": tokens_b}))


if __name__ == "__main__":
    main(*sys.argv[1:5])
