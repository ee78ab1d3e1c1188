"""The official `dfloat11` package as a peer, on the GPU host: models df11 compresses, of several
architectures (tied and untied, gemma-3 multimodal), loaded with DFloat11Model.from_pretrained, must give
the logits and greedy tokens transformers gives on their BF16 originals. Prints a JSON summary; exits 1
if any model fails. (Its CPU twin, tools/emulate_official_loader.py, runs the same check in CI.)

The package is not installed there: its source is read from an ignored folder on PYTHONPATH, never
vendored. Once, on the development machine (after the search tool's `fetch github:LeanModels/DFloat11`):
    mkdir -p .peers/DFloat11
    git --git-dir=/work/.mirror/LeanModels+DFloat11/repo archive HEAD | tar -x -C .peers/DFloat11
so that .peers/DFloat11/dfloat11/dfloat11.py exists (.peers/ is in .gitignore; carry it to the GPU host).
On the GPU host, from the repository root, with the CLI built (node packages/cli/dist/bin.js works):
    source scripts/gpu/setup.sh
    PYTHONPATH=.peers/DFloat11 python3 tools/peer_official_dfloat11.py --out gpu-logs/peer-official.json

Compatibility shims, applied only where needed and before dfloat11 is imported: transformers 5 moved
`no_init_weights` from transformers.modeling_utils to transformers.initialization (the package imports
the old place); `pkg_resources` (gone from recent setuptools) only has to locate decode.ptx; `dahuffman`
is needed to compress, not to load, so a stub stands in when it is absent.
"""
import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import types

import torch
from safetensors.torch import load_file, save_file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IDS = [1, 17, 42, 99, 7, 200, 5, 64, 128, 3, 250, 11]
NEW_TOKENS = 16
REL_TOLERANCE = 1e-2  # both sides run the same BF16 weights; kernels may differ in summation order only


def install_shims():
    applied = []
    import transformers.modeling_utils as modeling_utils
    if not hasattr(modeling_utils, "no_init_weights"):
        from transformers.initialization import no_init_weights
        modeling_utils.no_init_weights = no_init_weights
        applied.append("transformers.modeling_utils.no_init_weights = transformers.initialization.no_init_weights")
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        shim = types.ModuleType("pkg_resources")
        shim.resource_filename = lambda package, name: os.path.join(os.path.dirname(importlib.util.find_spec(package).origin), name)
        sys.modules["pkg_resources"] = shim
        applied.append("pkg_resources.resource_filename (locates decode.ptx)")
    try:
        import dahuffman  # noqa: F401
    except ImportError:
        stub = types.ModuleType("dahuffman")

        class HuffmanCodec:  # only the compressor uses it
            def __init__(self, *args, **kwargs):
                raise RuntimeError("dahuffman is not installed: this peer only loads models")

        stub.HuffmanCodec = HuffmanCodec
        sys.modules["dahuffman"] = stub
        applied.append("dahuffman stub (compression only)")
    return applied


@contextlib.contextmanager
def captured_stderr():
    """What is written to file descriptor 2 meanwhile (the package prints its warnings to the stderr it
    imported, so redirecting sys.stderr would miss them); echoed afterwards."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        box = {"text": ""}
        try:
            yield box
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            box["text"] = tmp.read().decode("utf-8", "replace")
            sys.stderr.write(box["text"])


def df11_compress(bf16, out):
    cli = os.path.join(REPO, "packages", "cli", "dist", "bin.js")
    if not os.path.exists(cli):
        raise SystemExit(f"{cli} is missing: build the CLI first (pnpm build)")
    subprocess.run(["node", cli, "compress", bf16, "-o", out, "--force"], check=True, stdout=subprocess.DEVNULL)
    return out


def gemma3_current_layout(legacy_bf16, out):
    """gemma-3 as transformers 5 saves it, from the reference model stored as Google ships it."""
    os.makedirs(out, exist_ok=True)
    renames = [("language_model.model.", "model.language_model."), ("vision_tower.", "model.vision_tower."), ("multi_modal_projector.", "model.multi_modal_projector.")]
    tensors = {}
    for name, t in load_file(os.path.join(legacy_bf16, "model.safetensors")).items():
        for old, new in renames:
            if name.startswith(old):
                name = new + name[len(old):]
                break
        tensors[name] = t
    save_file(tensors, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    shutil.copy(os.path.join(legacy_bf16, "config.json"), os.path.join(out, "config.json"))
    return out


def models_to_check(work, extra, only):
    """(name, make the df11 dir, bf16 dir, what): df11's own output for every reference model and fixture,
    the official fixtures' DF11 files as a control of this setup, and --extra pairs; those whose name
    contains `only`, if given. The df11 dirs are made when checked."""
    ref_root = os.path.join(REPO, "test-support", "reference-models")
    pairs = []
    for name in sorted(os.listdir(ref_root)):
        bf16 = os.path.join(ref_root, name, "bf16")
        pairs.append((name, lambda bf16=bf16, name=name: df11_compress(bf16, os.path.join(work, name)), bf16, "df11 compress"))
    current = os.path.join(work, "gemma3-vlm-current-bf16")
    pairs.append((
        "gemma3-vlm-tiny (transformers 5 layout)",
        lambda: df11_compress(gemma3_current_layout(os.path.join(ref_root, "gemma3-vlm-tiny", "bf16"), current), os.path.join(work, "gemma3-vlm-current")),
        current,
        "df11 compress",
    ))
    fixtures = os.environ.get("DF11_FIXTURES", os.path.join(REPO, "..", "shared", "fixtures"))
    if os.path.isdir(fixtures):
        for name in sorted(os.listdir(fixtures)):
            bf16, official = os.path.join(fixtures, name, "bf16"), os.path.join(fixtures, name, "df11")
            if os.path.exists(os.path.join(official, "config.json")):
                pairs.append((name, lambda bf16=bf16, name=name: df11_compress(bf16, os.path.join(work, name)), bf16, "df11 compress"))
                pairs.append((f"{name} (official DF11 files: control)", lambda official=official: official, bf16, "official"))
    for spec in extra:
        df11_dir, bf16 = spec.split(":", 1)
        pairs.append((os.path.basename(df11_dir.rstrip("/")), lambda df11_dir=df11_dir: df11_dir, bf16, "given"))
    return [p for p in pairs if not only or only in p[0]]


def logits_and_greedy(model, device):
    ids = torch.tensor([IDS], device=device)
    with torch.no_grad():
        logits = model(ids).logits[0].float()
        out = model.generate(ids, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False)
    return logits, out[0, len(IDS):].tolist()


def check(DFloat11Model, name, make_df11, bf16, what, device, device_map):
    from transformers import AutoModelForCausalLM

    result = {"model": name, "files": what, "bf16": bf16}
    try:
        df11_dir = make_df11()
        with open(os.path.join(df11_dir, "config.json")) as f:
            result.update({"df11": df11_dir, "patternDict": json.load(f)["dfloat11_config"]["pattern_dict"]})
        with captured_stderr() as log:
            placement = {"device": device} if device else {"device_map": device_map}
            official = DFloat11Model.from_pretrained(df11_dir, attn_implementation="eager", **placement)
        result["loaderWarnings"] = [l for l in log["text"].splitlines() if "Cannot find module path" in l or "Shape mismatch" in l]
        target = device or next(official.parameters()).device
        a, tokens_a = logits_and_greedy(official.eval(), target)
        del official
        reference = AutoModelForCausalLM.from_pretrained(bf16, dtype=torch.bfloat16, attn_implementation="eager").to(target).eval()
        b, tokens_b = logits_and_greedy(reference, target)
        del reference
        finite = bool(torch.isfinite(a).all())
        result.update({
            "finite": finite,
            "maxLogitDifference": float((a - b).abs().max()) if finite else None,
            "relativeL2": float((a - b).norm() / b.norm()) if finite else None,
            "greedyOfficial": tokens_a,
            "greedyTransformers": tokens_b,
        })
        result["ok"] = finite and tokens_a == tokens_b and result["relativeL2"] <= REL_TOLERANCE and not result["loaderWarnings"]
    except Exception as e:  # one model's failure is reported, the others still run
        result.update({"ok": False, "error": f"{type(e).__name__}: {e}"})
    torch.cuda.empty_cache()
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="also write the JSON summary here")
    parser.add_argument("--device", help="e.g. cuda:0 (model.to(device)); default: device_map='auto' as the package's README does")
    parser.add_argument("--extra", action="append", default=[], metavar="DF11_DIR:BF16_DIR", help="another pair to check")
    parser.add_argument("--keep", help="write the compressed models here instead of a temporary folder")
    parser.add_argument("--only", help="check only the models whose name contains this")
    args = parser.parse_args()
    shims = install_shims()
    import transformers
    from dfloat11 import DFloat11Model
    import dfloat11.dfloat11 as official_module

    work = args.keep or tempfile.mkdtemp(prefix="df11-peer-official-")
    os.makedirs(work, exist_ok=True)
    try:
        results = [check(DFloat11Model, *pair, args.device, "auto") for pair in models_to_check(work, args.extra, args.only)]
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    summary = {
        "peer": {"dfloat11": getattr(official_module, "version", "unknown"), "source": os.path.dirname(os.path.dirname(official_module.__file__)), "shims": shims},
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "relativeL2Tolerance": REL_TOLERANCE,
        "ok": bool(results) and all(r["ok"] for r in results),
        "passed": sum(r["ok"] for r in results),
        "failed": [r["model"] for r in results if not r["ok"]],
        "results": results,
    }
    text = json.dumps(summary, indent=1)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)
    sys.exit(0 if summary["ok"] else 1)


if __name__ == "__main__":
    main()
