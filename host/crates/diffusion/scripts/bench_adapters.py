#!/usr/bin/env python3
"""Adapter switching on SD 1.5 shapes with random weights: easel's merge-and-restore beside
diffusers' `load_lora_weights` + `set_adapters` (unfused) and `fuse_lora`, in one run.

    python scripts/bench_adapters.py --model /tmp/sd15-random --easel PATH/TO/sd-bench [--size 64] [--steps 3]

Writes the random SD 1.5-shaped model (as bench_diffusers.py does) when --model does not
exist, and four random rank-32 kohya LoRA files (every attention, feed-forward and projection
layer of the UNet, and the text encoder's attention and MLP: 264 layers) under
<model>/loras. Then, on CPU (what this machine has):

- diffusers: s per guided UNet call with no adapter; load_lora_weights per file; set_adapters
  with 1 and 4 adapters (weight 0.8) unfused and s per call; fuse_lora time and s per call
  fused; switching one fused set for another (unfuse_lora + set_adapters + fuse_lora);
- easel (sd-bench --loras): reading each file strictly; per set of 0, 1, 4 and again 1
  adapters, the merge, s per call, and the restore (a switch is one restore plus one merge;
  the first merge also maps the memory later merges reuse).
"""

import argparse
import json
import os
import subprocess
import sys
import time

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_diffusers  # noqa: E402

from diffusers import StableDiffusionPipeline  # noqa: E402

UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", "proj_in", "proj_out")
TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


def random_lora(text, unet, rank, seed):
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for prefix, model, targets in (("lora_unet_", unet, UNET_TARGETS), ("lora_te_text_model_", getattr(text, "text_model", text), TEXT_TARGETS)):
        for name, module in model.named_modules():
            if not name.endswith(targets) or not hasattr(module, "weight"):
                continue
            weight = module.weight
            out_dim, in_dim = weight.shape[0], weight[0].numel()
            key = prefix + name.replace(".", "_")
            down_shape = (rank,) + tuple(weight.shape[1:])
            out[f"{key}.lora_down.weight"] = (torch.randn(down_shape, generator=gen) / in_dim**0.5).half()
            up_shape = (out_dim, rank) + (1,) * (weight.dim() - 2)
            out[f"{key}.lora_up.weight"] = (torch.randn(up_shape, generator=gen) * 0.01).half()
            out[f"{key}.alpha"] = torch.tensor(float(rank)).half()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="/tmp/sd15-random")
    ap.add_argument("--easel", required=True)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--rank", type=int, default=32)
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    text, unet, vae = bench_diffusers.build()
    if not os.path.exists(a.model):
        bench_diffusers.save(a.model, text, unet, vae)
    loras = os.path.join(a.model, "loras")
    os.makedirs(loras, exist_ok=True)
    files = []
    for i in range(4):
        path = os.path.join(loras, f"random{i}.safetensors")
        if not os.path.exists(path):
            save_file(random_lora(text, unet, a.rank, 100 + i), path)
        files.append(path)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=None, unet=unet, scheduler=None,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    lat = a.size // 8
    x = torch.zeros(2, 4, lat, lat)
    ctx = torch.zeros(2, 77, 768)

    def per_call():
        unet(x, 500, encoder_hidden_states=ctx)
        start = time.perf_counter()
        for _ in range(a.steps):
            unet(x, 500, encoder_hidden_states=ctx)
        return (time.perf_counter() - start) / a.steps

    def timed(f):
        start = time.perf_counter()
        f()
        return time.perf_counter() - start

    d = {"step_0": per_call()}
    d["load_s"] = [timed(lambda p=p, i=i: pipe.load_lora_weights(p, adapter_name=f"a{i}")) for i, p in enumerate(files)]
    names = [f"a{i}" for i in range(4)]
    d["set_1_s"] = timed(lambda: pipe.set_adapters(names[:1], [0.8]))
    d["step_1_unfused"] = per_call()
    d["set_4_s"] = timed(lambda: pipe.set_adapters(names, [0.8] * 4))
    d["step_4_unfused"] = per_call()
    pipe.set_adapters(names[:1], [0.8])
    d["fuse_1_s"] = timed(lambda: pipe.fuse_lora(adapter_names=names[:1]))
    d["step_1_fused"] = per_call()

    def switch():
        pipe.unfuse_lora()
        pipe.set_adapters(names, [0.8] * 4)
        pipe.fuse_lora(adapter_names=names)

    d["switch_1_to_4_fused_s"] = timed(switch)
    d["step_4_fused"] = per_call()
    print("DIFFUSERS", json.dumps(d), flush=True)

    out = subprocess.run([a.easel, a.model, "--size", str(a.size), "--steps", str(a.steps), "--device", "flex",
                          "--loras", loras], capture_output=True, text=True)
    print(out.stdout, out.stderr[-3000:] if out.returncode else "", flush=True)
    runs = [json.loads(line.split(" ", 1)[1]) for line in out.stdout.splitlines() if line.startswith("ADAPTERS ")]
    easel = {r["adapters"]: r for r in runs[:3]}
    again = runs[3] if len(runs) > 3 else None
    print(f"\nSD 1.5 shapes, {a.size}x{a.size}, rank {a.rank}, CPU, {torch.get_num_threads()} threads")
    print("| | diffusers unfused | diffusers fused | easel (merged) |")
    print("|---|---|---|---|")
    e = lambda n, k: f"{easel[n][k]:.3f}" if n in easel else "n/a"
    print(f"| s per guided UNet call, no adapter | {d['step_0']:.3f} | {d['step_0']:.3f} | {e(0, 'step_s')} |")
    print(f"| s per call, 1 adapter | {d['step_1_unfused']:.3f} | {d['step_1_fused']:.3f} | {e(1, 'step_s')} |")
    print(f"| s per call, 4 adapters | {d['step_4_unfused']:.3f} | {d['step_4_fused']:.3f} | {e(4, 'step_s')} |")
    print(f"| load one file (s) | {sum(d['load_s']) / 4:.3f} (load_lora_weights) | | see 'read' above |")
    print(f"| apply 1 adapter (s) | {d['set_1_s']:.3f} (set_adapters) | {d['fuse_1_s']:.3f} (fuse_lora) | {e(1, 'merge_s')} (merge) |")
    if 4 in easel and 1 in easel:
        switch_easel = easel[1]["restore_s"] + easel[4]["merge_s"]
        print(f"| switch 1 → 4 adapters (s) | {d['set_4_s']:.3f} (set_adapters) | {d['switch_1_to_4_fused_s']:.3f} "
              f"(unfuse + set + fuse) | {switch_easel:.3f} (restore + merge) |")
    if again:
        print(f"| switch 4 → 1 adapter (s) | | | {easel[4]['restore_s'] + again['merge_s']:.3f} (restore + merge) |")


if __name__ == "__main__":
    main()
