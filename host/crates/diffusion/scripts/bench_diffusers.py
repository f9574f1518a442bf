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

`--cuda` runs diffusers on the GPU in float16 (eager, PyTorch's SDPA attention, diffusers'
default) and reports peak GPU memory (torch's peak allocation) instead of RSS; easel's
devices may then be `wgpu-f16` and `wgpu-f32` (EASEL_SD_PRECISION), whose peak GPU memory
is sampled from nvidia-smi while they run. `--tiny` makes a narrow model of the same layout
(channels 32-64, a 256-wide text encoder of 2 layers) for checking the whole run quickly, e.g. on lavapipe.
`scripts/gpu-bench` (repository root) wraps all of this into one command.

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


class GpuMemory:
    """Samples the GPU's used memory (nvidia-smi) every 50 ms until `stop`, which returns the
    peak above what was in use when sampling began, in MiB (NaN without nvidia-smi)."""

    def __init__(self):
        import threading

        self.samples = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    @staticmethod
    def used():
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=5)
            return float(out.stdout.split()[0])
        except (OSError, ValueError, IndexError, subprocess.SubprocessError):
            return None

    def run(self):
        while not self.done.wait(0.05):
            self.samples.append(self.used())

    def stop(self):
        self.done.set()
        self.thread.join()
        values = [v for v in self.samples if v is not None]
        return max(values) - values[0] if values else float("nan")


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(tiny=False):
    torch.manual_seed(0)
    # The tiny text width keeps CLIP's 49408-token table (151 MB in f32 at 768 wide) under
    # software Vulkan's 128 MiB buffer limit (lavapipe).
    width = 256 if tiny else 768
    unet = UNet2DConditionModel(
        sample_size=64, cross_attention_dim=width, attention_head_dim=8,
        block_out_channels=(32, 64, 64, 64) if tiny else (320, 640, 1280, 1280), layers_per_block=2,
    ).eval()
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(32, 32, 64, 64) if tiny else (128, 256, 512, 512), layers_per_block=2,
        latent_channels=4, sample_size=512,
    ).eval()
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=width, intermediate_size=4 * width, num_hidden_layers=2 if tiny else 12,
        num_attention_heads=width // 64, max_position_embeddings=77, hidden_act="quick_gelu",
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
    ap.add_argument("--cuda", action="store_true", help="diffusers on the GPU in float16")
    ap.add_argument("--tiny", action="store_true", help="a narrow model of the same layout")
    a = ap.parse_args()
    if a.easel and not a.save:
        ap.error("--easel needs --save (the model easel loads)")
    torch.set_num_threads(a.threads)
    torch.set_grad_enabled(False)
    text, unet, vae = build(a.tiny)
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
    if a.cuda:
        pipe = pipe.to("cuda", torch.float16)
        unet = pipe.unet
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
    device, dtype = ("cuda", torch.float16) if a.cuda else ("cpu", torch.float32)
    sync = torch.cuda.synchronize if a.cuda else (lambda: None)
    for size in [int(s) for s in a.sizes.split(",") if s]:
        lat = size // 8
        ctx = torch.zeros(2, 77, unet.config.cross_attention_dim, device=device, dtype=dtype)
        unet(torch.zeros(2, 4, lat, lat, device=device, dtype=dtype), 500, encoder_hidden_states=ctx)  # warm-up
        sync()
        if a.cuda:
            torch.cuda.reset_peak_memory_stats()
        marks = []
        last = [time.perf_counter()]

        def cb(p, i, t, kw):
            sync()
            now = time.perf_counter()
            marks.append(now - last[0])
            last[0] = now
            return kw

        start = time.perf_counter()
        last[0] = start
        pipe("a photograph of an astronaut riding a horse", height=size, width=size, num_inference_steps=a.steps,
             guidance_scale=7.5, output_type="np", callback_on_step_end=cb)
        sync()
        total = time.perf_counter() - start
        per = sum(marks[1:]) / max(1, len(marks) - 1) if len(marks) > 1 else marks[0]
        peak = torch.cuda.max_memory_allocated() / 2**20 if a.cuda else peak_mib()
        print(f"{size}x{size}: {a.steps} steps, {per:.3f} s per UNet step (CFG batch 2), {total:.2f} s per image, "
              f"peak {'GPU memory' if a.cuda else 'RSS'} {peak:.0f} MiB", flush=True)
        ours[size] = {"unet_s": per, "image_s": total, "peak_mib": peak}
    print(f"CPU steal during diffusers' runs: {steal.percent():.1f} %", flush=True)
    for r in ours.values():
        r["steal"] = steal.percent()
    return ours


def run_easel(a):
    """Runs easel's sd-bench per device: (device, figures) per size."""
    rows = []
    for device in [d for d in a.devices.split(",") if d]:
        backend, _, precision = device.partition("-")
        cmd = [a.easel, a.save, "--size", a.sizes, "--steps", str(a.steps), "--device", backend]
        env = dict(os.environ, **({"EASEL_SD_PRECISION": precision} if precision else {}))
        print("running", " ".join(cmd), precision, flush=True)
        steal = Steal()
        gpu = GpuMemory() if a.cuda else None
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
        gpu_peak = gpu.stop() if gpu else None
        easel_steal = steal.percent()
        print(out.stdout, out.stderr[-2000:] if out.returncode else "", flush=True)
        if out.returncode:
            print(f"easel on {device} failed (exit {out.returncode})")
            continue
        for line in out.stdout.splitlines():
            if line.startswith("RESULT "):
                r = json.loads(line[len("RESULT "):])
                r["steal"] = easel_steal
                if gpu_peak is not None:
                    r["peak_mib"] = gpu_peak
                rows.append((device, r))
    return rows


def print_table(rows, rounds):
    """Both sides per round, then (over several rounds) each side's fastest round per size."""
    print("\n(peak MiB: GPU memory with --cuda, else RSS)")
    print("| round | size | diffusers it/s | easel it/s | diffusers s/step | easel s/step | ratio | diffusers s/image "
          "| easel s/image | ratio | diffusers peak MiB | easel peak MiB | easel device | CPU steal diffusers / easel |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")

    def row(label, d, r, device, steal):
        print(f"| {label} | {r['size']} | {1 / d['unet_s']:.2f} | {1 / r['unet_s']:.2f} "
              f"| {d['unet_s']:.3f} | {r['unet_s']:.3f} | {r['unet_s'] / d['unet_s']:.2f} "
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
