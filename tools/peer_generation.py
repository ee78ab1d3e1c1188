"""transformers as a peer for generation as users see it (CPU, float32). Reads a JSON list of requests on
stdin (one Python start for many), prints a JSON list of answers:
  {"op": "generate", "dir": D, "prompt": TEXT, "max_new_tokens": N}
      → {"ids": [...], "text": decode(ids, skip_special_tokens=True)}  (the model's own generation_config:
        its eos ids, do_sample, repetition_penalty …)
  {"op": "score", "dir": D, "ids": [...]}
      → {"logprobs": [log p(ids[i] | ids[:i]) for i ≥ 1], "top": [[id, logprob] of the most likely, per position]}
  {"op": "template", "dir": D, "messages": [...], "tools": [...] | null, "kwargs": {...}}
      → {"text": apply_chat_template(..., tokenize=False, add_generation_prompt=True)} or {"error": message}
Usage: python tools/peer_generation.py < request.json
"""
import json
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def answer(req):
    tokenizer = AutoTokenizer.from_pretrained(req["dir"])
    if req["op"] == "template":
        try:
            text = tokenizer.apply_chat_template(req["messages"], tools=req.get("tools"), tokenize=False, add_generation_prompt=True, **req.get("kwargs", {}))
            return {"text": text}
        except Exception as e:  # the template raised: its message, as a client would see it
            return {"error": str(e)}
    model = AutoModelForCausalLM.from_pretrained(req["dir"], dtype=torch.float32, attn_implementation="eager")
    model.eval()
    with torch.no_grad():
        if req["op"] == "generate":
            ids = tokenizer(req["prompt"], return_tensors="pt").input_ids
            out = model.generate(ids, max_new_tokens=req["max_new_tokens"])[0, ids.shape[1]:].tolist()
            return {"ids": out, "text": tokenizer.decode(out, skip_special_tokens=True)}
        if req["op"] == "score":
            ids = req["ids"]
            logprobs = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), dim=-1)
            chosen = [float(logprobs[i - 1, ids[i]]) for i in range(1, len(ids))]
            top = [[int(logprobs[i].argmax()), float(logprobs[i].max())] for i in range(len(ids) - 1)]
            return {"logprobs": chosen, "top": top}
    raise ValueError(f"unknown op {req['op']}")


if __name__ == "__main__":
    print(json.dumps([answer(r) for r in json.load(sys.stdin)]))
