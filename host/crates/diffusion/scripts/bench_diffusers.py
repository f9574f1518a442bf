#!/usr/bin/env python3
"""diffusers/PyTorch side of easel's native-diffusion benchmark, on SD 1.5 shapes with
random weights (timing does not depend on the values).

    cargo build --release --bin sd-bench
    python scripts/bench_diffusers.py --save /tmp/sd15-random --easel PATH/TO/sd-bench --devices flex,wgpu

`--save` writes the random model (diffusers layout, f16) that easel then loads; `--easel`
runs the sd-bench binary on it once per device after diffusers' own measurements, in this
same run, and prints both side by side with the ratio easel / diffusers (below 1: easel is
faster). Each side reports its own process's peak RSS.

Both sides: EulerDiscreteScheduler, guidance 7.5 (uncond+cond batched, batch 2), the given
steps, one image, at each size; seconds per UNet step, seconds per image (text encoding +
denoising + VAE decode), peak RSS of the process.

On a virtual machine the hypervisor may run other guests on the same cores ("steal" time);
a side that ran under steal looks slower than it is. Each side's share of stolen CPU time
(from /proc/stat, Linux) is printed beside its figures: compare runs only where both are low.
Other guests also slow the machine without showing as steal (shared caches and memory
bandwidth), by a third within minutes on the build box, so `--rounds N` alternates the two
sides N times (diffusers stays loaded meanwhile) and adds a row per size of each side's
fastest round: the best estimate of what each does on a quiet machine.
"""

import argparse
import gc
import json
import os
import resource
import subprocess
import time

import torch
from safetensors.torch import save_file

from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel


class Steal:
    """The share of CPU time the hypervisor took from this machine since `start`."""

    @staticmethod
    def sample():
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except OSError:
            return None
        # user nice system idle iowait irq softirq steal ...
        return fields[7] if len(fields) > 7 else 0, sum(fields[:8])

    def __init__(self):
        self.start = Steal.sample()

    def percent(self):
        end = Steal.sample()
        if self.start is None or end is None or end[1] == self.start[1]:
            return float("nan")
        return 100.0 * (end[0] - self.start[0]) / (end[1] - self.start[1])


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build():
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=64, cross_attention_dim=768, attention_head_dim=8,
        block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
    ).eval()
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4, sample_size=512,
    ).eval()
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
        num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
    )).eval()
    return text, unet, vae


def save(folder, text, unet, vae):
    for name, m, fname in (("text_encoder", text, "model.safetensors"), ("unet", unet, "diffusion_pytorch_model.safetensors"),
                           ("vae", vae, "diffusion_pytorch_model.safetensors")):
        d = os.path.join(folder, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(dict(m.config if not hasattr(m.config, "to_dict") else m.config.to_dict()), f, default=str)
        sd = {k: v.contiguous().half() for k, v in m.state_dict().items() if "position_ids" not in k}
        save_file(sd, os.path.join(d, fname))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--save", help="write the random model here (diffusers layout, f16)")
    ap.add_argument("--sizes", default="256,512")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--easel", help="path of the sd-bench binary to run on the --save model afterwards")
    ap.add_argument("--devices", default="flex", help="easel devices to measure, comma-separated")
    ap.add_argument("--rounds", type=int, default=1, help="alternate diffusers and easel this many times")
    a = ap.parse_args()
    if a.easel and not a.save:
        ap.error("--easel needs --save (the model easel loads)")
    torch.set_num_threads(a.threads)
    torch.set_grad_enabled(False)
    text, unet, vae = build()
    if a.save:
        save(a.save, text, unet, vae)
        print("saved", a.save)
    sched = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)

    class Tok:
        model_max_length = 77

        def __call__(self, texts, **_):
            ids = torch.full((len(texts) if isinstance(texts, list) else 1, 77), 49407, dtype=torch.long)
            ids[:, 0] = 49406

            class R(dict):
                __getattr__ = dict.__getitem__
            return R(input_ids=ids, attention_mask=torch.ones_like(ids))

        def tokenize(self, t):
            return []

        def batch_decode(self, ids):
            return [""] * len(ids)

    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=Tok(), unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; load peak RSS {peak_mib():.0f} MiB")
    rows = []
    for round in range(1, a.rounds + 1):
        if a.rounds > 1:
            print(f"round {round} of {a.rounds}", flush=True)
        ours = measure(a, pipe, unet)
        if a.easel:
            if a.rounds == 1:
                # Free PyTorch's copy before easel loads its own, so the two never share the RAM.
                del pipe, text, unet, vae
                gc.collect()
            rows += [(round, ours, device, r) for device, r in run_easel(a)]
    if rows:
        print_table(rows, a.rounds)


def measure(a, pipe, unet):
    """diffusers' seconds per UNet step and per image at each size."""
    ours = {}
    steal = Steal()
    for size in [int(s) for s in a.sizes.split(",") if s]:
        lat = size // 8
        ctx = torch.zeros(2, 77, 768)
        unet(torch.zeros(2, 4, lat, lat), 500, encoder_hidden_states=ctx)  # warm-up
        marks = []
        last = [time.perf_counter()]

        def cb(p, i, t, kw):
            now = time.perf_counter()
            marks.append(now - last[0])
            last[0] = now
            return kw

        start = time.perf_counter()
        last[0] = start
        pipe("a photograph of an astronaut riding a horse", height=size, width=size, num_inference_steps=a.steps,
             guidance_scale=7.5, output_type="np", callback_on_step_end=cb)
        total = time.perf_counter() - start
        per = sum(marks[1:]) / max(1, len(marks) - 1) if len(marks) > 1 else marks[0]
        print(f"{size}x{size}: {a.steps} steps, {per:.2f} s per UNet step (CFG batch 2), {total:.2f} s per image, "
              f"peak RSS {peak_mib():.0f} MiB", flush=True)
        ours[size] = {"unet_s": per, "image_s": total, "peak_mib": peak_mib()}
    print(f"CPU steal during diffusers' runs: {steal.percent():.1f} %", flush=True)
    for r in ours.values():
        r["steal"] = steal.percent()
    return ours


def run_easel(a):
    """Runs easel's sd-bench per device: (device, figures) per size."""
    rows = []
    for device in [d for d in a.devices.split(",") if d]:
        cmd = [a.easel, a.save, "--size", a.sizes, "--steps", str(a.steps), "--device", device]
        print("running", " ".join(cmd), flush=True)
        steal = Steal()
        out = subprocess.run(cmd, capture_output=True, text=True)
        easel_steal = steal.percent()
        print(out.stdout, out.stderr[-2000:] if out.returncode else "", flush=True)
        if out.returncode:
            print(f"easel on {device} failed (exit {out.returncode})")
            continue
        for line in out.stdout.splitlines():
            if line.startswith("RESULT "):
                r = json.loads(line[len("RESULT "):])
                r["steal"] = easel_steal
                rows.append((device, r))
    return rows


def print_table(rows, rounds):
    """Both sides per round, then (over several rounds) each side's fastest round per size."""
    print("\n| round | size | diffusers s/step | easel s/step | ratio | diffusers s/image | easel s/image | ratio "
          "| diffusers peak MiB | easel peak MiB | easel device | CPU steal diffusers / easel |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")

    def row(label, d, r, device, steal):
        print(f"| {label} | {r['size']} | {d['unet_s']:.2f} | {r['unet_s']:.2f} | {r['unet_s'] / d['unet_s']:.2f} "
              f"| {d['image_s']:.2f} | {r['image_s']:.2f} | {r['image_s'] / d['image_s']:.2f} "
              f"| {d['peak_mib']:.0f} | {r['peak_mib']:.0f} | {device} | {steal} |")

    for round, ours, device, r in rows:
        d = ours[r["size"]]
        row(round, d, r, device, f"{d['steal']:.1f} % / {r['steal']:.1f} %")
    if rounds > 1:
        for device, size in dict.fromkeys((device, r["size"]) for _, _, device, r in rows):
            mine = [(ours[size], r) for _, ours, dev, r in rows if dev == device and r["size"] == size]
            best = lambda side, key: min(pair[side][key] for pair in mine)
            d = {k: best(0, k) for k in ("unet_s", "image_s", "peak_mib")}
            r = {"size": size, **{k: best(1, k) for k in ("unet_s", "image_s", "peak_mib")}}
            row(f"best of {len(mine)}", d, r, device, "")


if __name__ == "__main__":
    main()
