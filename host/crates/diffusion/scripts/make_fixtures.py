#!/usr/bin/env python3
"""Builds the tiny random SD 1.x and SD 2.x fixtures that easel-diffusion's parity tests read.

Run from the crate folder (host/crates/diffusion):

    pip install torch diffusers transformers safetensors numpy
    python scripts/make_fixtures.py

It writes tests/fixtures/:
  tiny-sd/                diffusers layout (text_encoder/, unet/, vae/, scheduler/, model_index.json)
  tiny-sd.safetensors     the same weights under the original (CompVis/LDM) key names
  reference.safetensors   inputs (fixed latents and noise) and diffusers' outputs
  reference.json          the token ids, prompts and settings the outputs were made with
  schedulers.safetensors  each scheduler alone over 8 steps with a stand-in linear model, so
                          multistep logic the 2-step pipelines never reach is checked too
  schedulers_v.safetensors  the same, reading the stand-in's output as a v-prediction
  tiny-sd2/               a tiny SD 2.x (768-v) model in diffusers layout: gelu CLIP one layer
                          short of its OpenCLIP tower (the "penultimate layer"), linear
                          proj_in/proj_out, per-block head counts, upcast attention,
                          v-prediction scheduler config, tokenizer/special_tokens_map.json
                          padding with "!"
  tiny-sd2.safetensors    the same weights under SD 2.x's original key names (LDM UNet and
                          VAE, OpenCLIP text tower with its last, unused resblock)
  reference_sd2.safetensors / reference_sd2.json  its inputs and diffusers' outputs
  reference_odd.safetensors / reference_odd.json  one UNet call of tiny-sd/ on 5 x 8 latents:
                          5 rounds up to 3 at the second level, so the up block resizes back
                          to 5 instead of doubling

`python scripts/make_fixtures.py --schedulers-only` rewrites only the two schedulers files;
`--sd2` rewrites only the SD 2.x files; `--odd-only` only the odd-size reference (from the
saved tiny-sd/ folder); `--adapters` only the adapters and their references under
tests/fixtures/adapters/ (from the saved models; see make_adapter_fixtures.py, which needs
`pip install peft` too).

Every weight is rounded through float16 and stored as float16 to keep the files small; the
references are computed in float32 from exactly those rounded weights, so the Rust side,
which widens float16 to float32 at load, sees identical parameters.

Noise: the script never uses torch's RNG for anything the Rust side must reproduce. The
initial latents and every ancestral/img2img noise tensor come from numpy with a fixed seed
and are stored in reference.safetensors; schedulers' calls to `randn_tensor` are patched to
pop from that stored queue, in order.
"""

import json
import os
import shutil
import sys

import numpy as np
import torch
from safetensors.torch import save_file

import diffusers
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    KDPM2AncestralDiscreteScheduler,
    KDPM2DiscreteScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel

HERE = os.path.dirname(os.path.abspath(__file__))
CRATE = os.path.dirname(HERE)
OUT = os.path.join(CRATE, "tests", "fixtures")
VOCAB = os.path.join(CRATE, "assets", "bpe_simple_vocab_16e6.txt.gz")

torch.manual_seed(0)
torch.set_grad_enabled(False)

SCHEDULER_BASE = {
    # Stable Diffusion 1.5's scheduler_config.json (no timestep_spacing key: each class
    # then uses its own default, which is what easel reproduces).
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "steps_offset": 1,
    "clip_sample": False,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "prediction_type": "epsilon",
    "trained_betas": None,
}

SCHEDULERS = {
    "DPMSolverMultistepScheduler": DPMSolverMultistepScheduler,
    "DDIMScheduler": DDIMScheduler,
    "EulerDiscreteScheduler": EulerDiscreteScheduler,
    "EulerAncestralDiscreteScheduler": EulerAncestralDiscreteScheduler,
    "PNDMScheduler": PNDMScheduler,
    "LMSDiscreteScheduler": LMSDiscreteScheduler,
    "HeunDiscreteScheduler": HeunDiscreteScheduler,
    "KDPM2DiscreteScheduler": KDPM2DiscreteScheduler,
    "KDPM2AncestralDiscreteScheduler": KDPM2AncestralDiscreteScheduler,
}


def round_f16(module):
    for p in module.parameters():
        p.data = p.data.half().float()
    return module


def randomize(module, scale=0.2):
    """Random weights with enough spread that every path matters (norm gains near 1)."""
    g = torch.Generator().manual_seed(42)
    for name, p in module.named_parameters():
        if name.endswith("weight") and p.ndim == 1:
            p.data = 1.0 + 0.1 * torch.randn(p.shape, generator=g)
        elif name.endswith("bias"):
            p.data = 0.05 * torch.randn(p.shape, generator=g)
        else:
            fan_in = max(1, p[0].numel()) if p.ndim > 1 else 1
            p.data = torch.randn(p.shape, generator=g) * (scale if p.ndim == 1 else 1.0 / fan_in**0.5)
    return module


def build_models():
    text_config = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
        projection_dim=8,
    )
    text_encoder = CLIPTextModel(text_config).eval()
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=2,
        attention_head_dim=2,
        cross_attention_dim=8,
        norm_num_groups=8,
    ).eval()
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=64,
    ).eval()
    for m in (text_encoder, unet, vae):
        randomize(m)
        round_f16(m)
    return text_encoder, unet, vae


# ---- diffusers -> original (LDM) key names; the Rust loader implements the same map ----

RESNET_UNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}


def unet_key(k, layers, n_blocks):
    p = k.split(".")
    if p[0] == "time_embedding":
        return {"linear_1": "time_embed.0", "linear_2": "time_embed.2"}[p[1]] + "." + ".".join(p[2:])
    if p[0] == "conv_in":
        return "input_blocks.0.0." + ".".join(p[1:])
    if p[0] == "conv_norm_out":
        return "out.0." + ".".join(p[1:])
    if p[0] == "conv_out":
        return "out.2." + ".".join(p[1:])

    def resnet(rest):
        return RESNET_UNET.get(rest[0], rest[0]) + "." + ".".join(rest[1:])

    if p[0] == "down_blocks":
        b = int(p[1])
        if p[2] == "downsamplers":
            return f"input_blocks.{(b + 1) * (layers + 1)}.0.op." + ".".join(p[5:])
        j = int(p[3])
        idx = 1 + b * (layers + 1) + j
        if p[2] == "resnets":
            return f"input_blocks.{idx}.0." + resnet(p[4:])
        return f"input_blocks.{idx}.1." + ".".join(p[4:])
    if p[0] == "mid_block":
        j = int(p[2])
        if p[1] == "resnets":
            return f"middle_block.{2 * j}." + resnet(p[3:])
        return "middle_block.1." + ".".join(p[3:])
    if p[0] == "up_blocks":
        raise KeyError("up blocks need the attention flag; handled by the caller")
    raise KeyError(k)


def unet_up_key(k, layers, has_attn):
    p = k.split(".")
    b = int(p[1])
    if p[2] == "upsamplers":
        return f"output_blocks.{b * (layers + 1) + layers}.{2 if has_attn else 1}.conv." + ".".join(p[5:])
    j = int(p[3])
    idx = b * (layers + 1) + j
    if p[2] == "resnets":
        return f"output_blocks.{idx}.0." + RESNET_UNET.get(p[4], p[4]) + "." + ".".join(p[5:])
    return f"output_blocks.{idx}.1." + ".".join(p[4:])


def vae_key(k, n_blocks):
    p = k.split(".")
    side = p[0]
    rest = p[1:]

    def resnet(r):
        return {"conv_shortcut": "nin_shortcut"}.get(r[0], r[0]) + "." + ".".join(r[1:])

    if side in ("quant_conv", "post_quant_conv"):
        return k
    if rest[0] in ("conv_in", "conv_out"):
        return k
    if rest[0] == "conv_norm_out":
        return f"{side}.norm_out." + ".".join(rest[1:])
    if rest[0] == "mid_block":
        if rest[1] == "resnets":
            return f"{side}.mid.block_{int(rest[2]) + 1}." + resnet(rest[3:])
        name = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out": "proj_out"}[rest[3]]
        tail = rest[5:] if rest[3] == "to_out" else rest[4:]
        return f"{side}.mid.attn_1.{name}." + ".".join(tail)
    if rest[0] in ("down_blocks", "up_blocks"):
        i = int(rest[1])
        if side == "decoder":
            i = n_blocks - 1 - i
        word = "down" if side == "encoder" else "up"
        if rest[2] in ("downsamplers", "upsamplers"):
            return f"{side}.{word}.{i}.{'downsample' if side == 'encoder' else 'upsample'}.conv." + ".".join(rest[5:])
        return f"{side}.{word}.{i}.block.{rest[3]}." + resnet(rest[4:])
    raise KeyError(k)


def ldm_unet_vae_state(unet, vae):
    """The UNet and VAE under their original (LDM) names, shared by SD 1.x and 2.x files."""
    out = {}
    layers = unet.config.layers_per_block
    up_attn = [t.startswith("CrossAttn") for t in unet.config.up_block_types]
    for k, v in unet.state_dict().items():
        if k.startswith("up_blocks"):
            nk = unet_up_key(k, layers, up_attn[int(k.split(".")[1])])
        else:
            nk = unet_key(k, layers, len(unet.config.block_out_channels))
        out["model.diffusion_model." + nk] = v
    for k, v in vae.state_dict().items():
        nk = vae_key(k, len(vae.config.block_out_channels))
        if ".mid.attn_1." in nk and nk.endswith("weight") and v.ndim == 2:
            v = v[:, :, None, None]
        out["first_stage_model." + nk] = v
    return out


def single_file_state(text_encoder, unet, vae):
    out = ldm_unet_vae_state(unet, vae)
    for k, v in text_encoder.state_dict().items():
        if "position_ids" in k:
            continue
        out["cond_stage_model.transformer." + k] = v
    assert len(set(out)) == len(out)
    return {k: v.contiguous().half() for k, v in out.items()}


def save_f16(model, folder, name):
    os.makedirs(folder, exist_ok=True)
    model.config_path = folder
    model.save_pretrained(folder, safe_serialization=True)
    # re-save as float16 to halve the size (values are already f16-exact)
    path = os.path.join(folder, name)
    sd = {k: v.contiguous().half() for k, v in model.state_dict().items() if "position_ids" not in k}
    save_file(sd, path)


class NoiseQueue:
    def __init__(self, rng):
        self.rng = rng
        self.drawn = []

    def draw(self, shape):
        a = self.rng.standard_normal(size=tuple(shape)).astype(np.float32)
        self.drawn.append(a)
        return torch.from_numpy(a.copy())


def patch_randn(queue):
    """Routes every scheduler/pipeline randn_tensor call through the numpy queue."""

    def fake(shape, generator=None, device=None, dtype=None, layout=None):
        return queue.draw(shape).to(dtype or torch.float32)

    import diffusers.schedulers.scheduling_euler_ancestral_discrete as ea
    import diffusers.schedulers.scheduling_k_dpm_2_ancestral_discrete as ka
    import diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img as i2i

    for mod in (ea, ka, i2i):
        if hasattr(mod, "randn_tensor"):
            mod.randn_tensor = fake


SCHEDULER_STEPS = 8


def scheduler_trajectories(prediction_type="epsilon", file_name="schedulers.safetensors"):
    """Each scheduler driven by a stand-in model `out = 0.6 * x_in + 1e-4 * t` (cheap, and
    reproducible bit for bit in Rust) for SCHEDULER_STEPS steps from fixed latents; 8 steps
    reach LMS's order 4, PNDM's full PLMS, DPM++ 2M's lower-order final steps and several
    KDPM2/Heun midpoints. With `prediction_type="v_prediction"` the same output is read as
    a v-prediction (SD 2.x's 768-v models)."""
    ref = {}
    start = torch.from_numpy(np.random.RandomState(3).standard_normal((1, 4, 4, 4)).astype(np.float32))
    for name, cls in SCHEDULERS.items():
        sched = cls.from_config(dict(SCHEDULER_BASE, prediction_type=prediction_type))
        sched.set_timesteps(SCHEDULER_STEPS)
        q = NoiseQueue(np.random.RandomState(5))
        patch_randn(q)
        sample = start * sched.init_noise_sigma
        for t in sched.timesteps:
            x_in = sched.scale_model_input(sample, t)
            out = 0.6 * x_in + 1e-4 * t.float()
            sample = sched.step(out, t, sample).prev_sample
        ref[f"{name}.timesteps"] = torch.as_tensor(sched.timesteps).float()
        ref[f"{name}.noise"] = torch.from_numpy(np.stack(q.drawn)) if q.drawn else torch.zeros(1)
        ref[f"{name}.out"] = sample
        print(name, prediction_type, f"{SCHEDULER_STEPS} steps:", len(sched.timesteps), "calls,", len(q.drawn), "noise draws")
    ref["start"] = start
    save_file({k: v.contiguous().float() for k, v in ref.items()}, os.path.join(OUT, file_name))


def all_scheduler_trajectories():
    scheduler_trajectories()
    scheduler_trajectories("v_prediction", "schedulers_v.safetensors")


BOS, EOS = 49406, 49407


# ---- SD 2.x (768-v) ----

# stabilityai/stable-diffusion-2-1's scheduler config: SD 1.x's schedule, read as v-prediction.
SD2_SCHEDULER = dict(SCHEDULER_BASE, prediction_type="v_prediction")
# SD 2.x's per-block heads [5, 10, 20, 20] (64 channels each) scaled down to 4 channels each;
# diffusers reads the historical `attention_head_dim` as the head count, as for SD 2.x.
SD2_HEADS = [2, 4, 4]
SD2_HEAD_CHANNELS = 4
# stable-diffusion-2-1's tokenizer/special_tokens_map.json: OpenCLIP pads with id 0, "!".
SD2_SPECIAL_TOKENS = {
    "bos_token": {"content": "<|startoftext|>", "lstrip": False, "normalized": True, "rstrip": False, "single_word": False},
    "eos_token": {"content": "<|endoftext|>", "lstrip": False, "normalized": True, "rstrip": False, "single_word": False},
    "pad_token": "!",
    "unk_token": {"content": "<|endoftext|>", "lstrip": False, "normalized": True, "rstrip": False, "single_word": False},
}
SD2_PAD = 0


def build_sd2_models():
    """The OpenCLIP text tower (3 layers), the diffusers text encoder made of all but its last
    layer (SD 2.x conditions on the penultimate layer, then the final norm; diffusers' SD 2.x
    config says so with 23 of OpenCLIP ViT-H's 24 layers), the UNet and the VAE."""
    def text_config(layers):
        return CLIPTextConfig(
            vocab_size=49408,
            hidden_size=4,
            intermediate_size=16,
            num_hidden_layers=layers,
            num_attention_heads=2,
            max_position_embeddings=77,
            hidden_act="gelu",
            bos_token_id=BOS,
            eos_token_id=EOS,
            pad_token_id=SD2_PAD,
            projection_dim=4,
        )

    tower = CLIPTextModel(text_config(3)).eval()
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(8, 16, 16),
        layers_per_block=1,
        attention_head_dim=SD2_HEADS,
        cross_attention_dim=4,
        norm_num_groups=4,
        use_linear_projection=True,
        upcast_attention=True,
    ).eval()
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 8),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=16,
    ).eval()
    for m in (tower, unet, vae):
        randomize(m)
        round_f16(m)
    text_encoder = CLIPTextModel(text_config(2)).eval()
    missing, unexpected = text_encoder.load_state_dict(tower.state_dict(), strict=False)
    assert not missing and all(k.startswith("encoder.layers.2.") for k in unexpected), (missing, unexpected)
    return tower, text_encoder, unet, vae


# ---- transformers CLIP -> OpenCLIP text tower names (SD 2.x's cond_stage_model.model.*) ----

OPEN_CLIP_LAYER = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "self_attn.out_proj": "attn.out_proj",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}


def open_clip_state(tower):
    """OpenCLIP keeps q, k and v as one `in_proj` (rows q, then k, then v), the position
    table as a bare parameter, and a text projection and logit scale SD never reads."""
    sd = tower.state_dict()
    width = tower.config.hidden_size
    g = torch.Generator().manual_seed(43)
    out = {
        "token_embedding.weight": sd["embeddings.token_embedding.weight"],
        "positional_embedding": sd["embeddings.position_embedding.weight"],
        "ln_final.weight": sd["final_layer_norm.weight"],
        "ln_final.bias": sd["final_layer_norm.bias"],
        "text_projection": (torch.randn((width, tower.config.projection_dim), generator=g) / width**0.5).half().float(),
        "logit_scale": torch.tensor(4.6052),
    }
    for i in range(tower.config.num_hidden_layers):
        src, dst = f"encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for part in ("weight", "bias"):
            for name, ldm in OPEN_CLIP_LAYER.items():
                out[f"{dst}{ldm}.{part}"] = sd[f"{src}{name}.{part}"]
            out[f"{dst}attn.in_proj_{part}"] = torch.cat([sd[f"{src}self_attn.{x}_proj.{part}"] for x in "qkv"])
    assert len(out) == len(sd) - sum("position_ids" in k for k in sd) - 6 * tower.config.num_hidden_layers + 2 * tower.config.num_hidden_layers + 2
    return out


def check_open_clip_layout(state, tower, text_encoder, ids):
    """Loads `state` into open_clip's own text tower and runs it the way SD 2.x's
    FrozenOpenCLIPEmbedder does (all resblocks but the last, then ln_final): it must give
    diffusers' embeddings, so the reverse map above is checked independently of easel."""
    from open_clip.transformer import TextTransformer

    c = tower.config
    oc = TextTransformer(width=c.hidden_size, heads=c.num_attention_heads, layers=c.num_hidden_layers,
                         mlp_ratio=c.intermediate_size / c.hidden_size, output_dim=c.projection_dim).eval()
    own = {k: v for k, v in state.items() if k != "logit_scale"}
    missing, unexpected = oc.load_state_dict(own, strict=False)
    assert not missing or all("text_projection" in k for k in missing), missing
    assert all("text_projection" in k for k in unexpected), unexpected
    x, mask = oc._embeds(ids)
    if not oc.transformer.batch_first:
        x = x.transpose(0, 1)
    for block in oc.transformer.resblocks[:-1]:
        x = block(x, attn_mask=mask)
    if not oc.transformer.batch_first:
        x = x.transpose(0, 1)
    d = (oc.ln_final(x) - text_encoder(ids)[0]).abs().max().item()
    print("open_clip penultimate layer vs diffusers text encoder: max diff", d)
    assert d < 1e-5, d


def save_sorted_header(tensors, path, metadata):
    """save_file, then its JSON header rewritten with sorted keys: safetensors serializes
    `metadata` from a hash map, so the file's bytes would otherwise vary from run to run."""
    save_file(tensors, path, metadata=metadata)
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    text = json.dumps(json.loads(raw[8:8 + n]), sort_keys=True, separators=(",", ":")).encode()
    assert len(text) <= n
    with open(path, "wb") as f:
        f.write(raw[:8] + text + b" " * (n - len(text)) + raw[8 + n:])


def make_sd2(tok):
    """The SD 2.x fixtures (see the module docs); references in v-prediction throughout."""
    folder = os.path.join(OUT, "tiny-sd2")
    if os.path.exists(folder):
        shutil.rmtree(folder)
    tower, text_encoder, unet, vae = build_sd2_models()
    save_f16(text_encoder, os.path.join(folder, "text_encoder"), "model.safetensors")
    save_f16(unet, os.path.join(folder, "unet"), "diffusion_pytorch_model.safetensors")
    save_f16(vae, os.path.join(folder, "vae"), "diffusion_pytorch_model.safetensors")
    os.makedirs(os.path.join(folder, "scheduler"))
    with open(os.path.join(folder, "scheduler", "scheduler_config.json"), "w") as f:
        json.dump(dict(SD2_SCHEDULER, _class_name="DDIMScheduler"), f, indent=2)
    os.makedirs(os.path.join(folder, "tokenizer"))
    with open(os.path.join(folder, "tokenizer", "special_tokens_map.json"), "w") as f:
        json.dump(SD2_SPECIAL_TOKENS, f, indent=2)
    with open(os.path.join(folder, "model_index.json"), "w") as f:
        json.dump({"_class_name": "StableDiffusionPipeline", "_diffusers_version": diffusers.__version__}, f)

    prompts = ["a photo of an astronaut riding a horse on Mars", ""]
    token_ids = [token_row(tok, p, pad=SD2_PAD) for p in prompts]
    ids = torch.tensor(token_ids, dtype=torch.long)
    text = open_clip_state(tower)
    check_open_clip_layout(text, tower, text_encoder, ids)
    state = ldm_unet_vae_state(unet, vae)
    state.update({"cond_stage_model.model." + k: v for k, v in text.items()})
    save_sorted_header({k: v.contiguous().half() for k, v in state.items()}, os.path.join(OUT, "tiny-sd2.safetensors"),
                       metadata={"easel.unet.head_channels": str(SD2_HEAD_CHANNELS), "easel.unet.norm_num_groups": "4",
                                 "easel.vae.norm_num_groups": "4", "easel.clip.heads": "2"})

    ref = {"clip.hidden": text_encoder(ids)[0]}
    # 4 x 8 latents: non-square, and odd sizes after two downsamplers (4x8, 2x4, 1x2).
    img = model_references(ref, unet, vae, np.random.RandomState(2345), latent_hw=(4, 8), context_width=4,
                           image_hw=(8, 16))

    settings = {"prompt": prompts[0], "negative_prompt": "blurry", "guidance_scale": 7.5, "steps": 2,
                "width": 16, "height": 8, "strength": 0.6, "img2img_steps": 4}
    models = (text_encoder, unet, vae)
    embed = embedder(tok, text_encoder, pad=SD2_PAD)
    txt2img_references(ref, models, tok, embed, settings, SD2_SCHEDULER)
    img2img_references(ref, models, tok, embed, settings, SD2_SCHEDULER, img,
                       ("DDIMScheduler", "EulerAncestralDiscreteScheduler"))
    save_file({k: v.contiguous().float() for k, v in ref.items()}, os.path.join(OUT, "reference_sd2.safetensors"))
    with open(os.path.join(OUT, "reference_sd2.json"), "w") as f:
        json.dump({"prompts": prompts, "token_ids": token_ids, "settings": settings,
                   "diffusers": diffusers.__version__, "torch": torch.__version__}, f, indent=1)
    sd2 = [os.path.join(OUT, n) for n in ("tiny-sd2.safetensors", "reference_sd2.safetensors", "reference_sd2.json")]
    total = sum(os.path.getsize(p) for p in sd2) + sum(
        os.path.getsize(os.path.join(d, n)) for d, _, ns in os.walk(folder) for n in ns)
    print("SD 2.x fixtures:", total, "bytes")


def odd_size_references():
    """One guided-batch UNet call of the saved tiny SD 1.x model on 5 x 8 latents, from its own
    RNG, so that the other references stay as they are."""
    unet = UNet2DConditionModel.from_pretrained(os.path.join(OUT, "tiny-sd", "unet")).float().eval()
    rng = np.random.RandomState(5678)
    ref = {"unet.sample": torch.from_numpy(rng.standard_normal((2, 4, 5, 8)).astype(np.float32)),
           "unet.context": torch.from_numpy(rng.standard_normal((2, 77, 8)).astype(np.float32))}
    ref["unet.out"] = unet(ref["unet.sample"], torch.tensor([981.0, 981.0]),
                           encoder_hidden_states=ref["unet.context"]).sample
    save_file({k: v.contiguous() for k, v in ref.items()}, os.path.join(OUT, "reference_odd.safetensors"))
    with open(os.path.join(OUT, "reference_odd.json"), "w") as f:
        json.dump({"diffusers": diffusers.__version__, "torch": torch.__version__}, f, indent=1)


def model_references(ref, unet, vae, rng, latent_hw, context_width, image_hw):
    """One guided-batch UNet call, a VAE decode and a VAE encode on inputs drawn from `rng`
    (always in this order, which the committed references depend on); returns the image,
    which img2img reuses."""
    h, w = latent_hw
    sample = torch.from_numpy(rng.standard_normal((2, 4, h, w)).astype(np.float32))
    ctx = torch.from_numpy(rng.standard_normal((2, 77, context_width)).astype(np.float32))
    ref["unet.sample"] = sample
    ref["unet.context"] = ctx
    ref["unet.out"] = unet(sample, torch.tensor([981.0, 981.0]), encoder_hidden_states=ctx).sample
    lat = torch.from_numpy(rng.standard_normal((1, 4, h, w)).astype(np.float32))
    ref["vae.latents"] = lat
    ref["vae.decoded"] = vae.decode(lat).sample
    img = torch.from_numpy(rng.uniform(-1, 1, (1, 3) + tuple(image_hw)).astype(np.float32))
    ref["vae.image"] = img
    ref["vae.mean"] = vae.encode(img).latent_dist.mean
    return img


def token_row(tok, text, pad):
    """CLIP's 77 ids: <|startoftext|>, at most 75 tokens, <|endoftext|>, then `pad`."""
    ids = [BOS] + tok.encode(text)[:75] + [EOS]
    return ids + [pad] * (77 - len(ids))


def embedder(tok, text_encoder, pad):
    return lambda text: text_encoder(torch.tensor([token_row(tok, text, pad)]))[0]


def txt2img_references(ref, models, tok, embed, settings, scheduler_config):
    """Each scheduler's two-step txt2img from fixed latents (`pipe.<scheduler>.*`)."""
    text_encoder, unet, vae = models
    latent_shape = (1, 4, settings["height"] // vae_scale(vae), settings["width"] // vae_scale(vae))
    for name, cls in SCHEDULERS.items():
        sched = cls.from_config(scheduler_config)
        pipe = StableDiffusionPipeline(
            vae=vae, text_encoder=text_encoder, tokenizer=HFTok(tok), unet=unet, scheduler=sched,
            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )
        q = NoiseQueue(np.random.RandomState(7))
        patch_randn(q)
        latents = torch.from_numpy(np.random.RandomState(99).standard_normal(latent_shape).astype(np.float32))
        out = pipe(prompt_embeds=embed(settings["prompt"]), negative_prompt_embeds=embed(settings["negative_prompt"]),
                   num_inference_steps=settings["steps"], guidance_scale=settings["guidance_scale"],
                   height=settings["height"], width=settings["width"], latents=latents, output_type="np").images
        ref[f"pipe.{name}.latents"] = latents
        ref[f"pipe.{name}.noise"] = torch.from_numpy(np.stack(q.drawn)) if q.drawn else torch.zeros(1)
        ref[f"pipe.{name}.image"] = torch.from_numpy(out)
        ref[f"pipe.{name}.timesteps"] = torch.as_tensor(sched.timesteps).float()
        print(name, "timesteps", sched.timesteps.tolist(), "noise draws", len(q.drawn))


def img2img_references(ref, models, tok, embed, settings, scheduler_config, img, names):
    """img2img of `img` (in [-1, 1]) with each of `names` (`img2img.<scheduler>.*`)."""
    text_encoder, unet, vae = models
    for name in names:
        sched = SCHEDULERS[name].from_config(scheduler_config)
        pipe = StableDiffusionImg2ImgPipeline(
            vae=vae, text_encoder=text_encoder, tokenizer=HFTok(tok), unet=unet, scheduler=sched,
            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )
        q = NoiseQueue(np.random.RandomState(11))
        patch_randn(q)
        init = (img / 2 + 0.5).clamp(0, 1)
        # Deterministic encode: use the posterior mean (Rust does the same for img2img).
        orig = diffusers.models.autoencoders.vae.DiagonalGaussianDistribution.sample
        diffusers.models.autoencoders.vae.DiagonalGaussianDistribution.sample = lambda self, generator=None: self.mean
        out = pipe(prompt_embeds=embed(settings["prompt"]), negative_prompt_embeds=embed(settings["negative_prompt"]),
                   image=init, strength=settings["strength"], num_inference_steps=settings["img2img_steps"],
                   guidance_scale=settings["guidance_scale"], output_type="np").images
        diffusers.models.autoencoders.vae.DiagonalGaussianDistribution.sample = orig
        ref[f"img2img.{name}.init"] = init
        ref[f"img2img.{name}.noise"] = torch.from_numpy(np.stack(q.drawn))
        ref[f"img2img.{name}.image"] = torch.from_numpy(out)
        print("img2img", name, "timesteps", sched.timesteps.tolist(), "noise draws", len(q.drawn))


def vae_scale(vae):
    return 2 ** (len(vae.config.block_out_channels) - 1)


def main():
    if "--adapters" in sys.argv:
        sys.path.insert(0, HERE)
        import make_adapter_fixtures

        make_adapter_fixtures.main(OUT, SCHEDULER_BASE, SD2_SCHEDULER)
        return
    import open_clip

    tok = open_clip.tokenizer.SimpleTokenizer(bpe_path=VOCAB)
    if "--schedulers-only" in sys.argv:
        all_scheduler_trajectories()
        return
    if "--sd2" in sys.argv:
        make_sd2(tok)
        return
    if "--odd-only" in sys.argv:
        odd_size_references()
        return
    if os.path.exists(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    text_encoder, unet, vae = build_models()
    folder = os.path.join(OUT, "tiny-sd")
    save_f16(text_encoder, os.path.join(folder, "text_encoder"), "model.safetensors")
    save_f16(unet, os.path.join(folder, "unet"), "diffusion_pytorch_model.safetensors")
    save_f16(vae, os.path.join(folder, "vae"), "diffusion_pytorch_model.safetensors")
    os.makedirs(os.path.join(folder, "scheduler"), exist_ok=True)
    with open(os.path.join(folder, "scheduler", "scheduler_config.json"), "w") as f:
        json.dump(dict(SCHEDULER_BASE, _class_name="PNDMScheduler"), f, indent=2)
    with open(os.path.join(folder, "model_index.json"), "w") as f:
        json.dump({"_class_name": "StableDiffusionPipeline", "_diffusers_version": diffusers.__version__}, f)
    save_sorted_header(single_file_state(text_encoder, unet, vae), os.path.join(OUT, "tiny-sd.safetensors"),
                       metadata={"easel.unet.heads": "2", "easel.unet.norm_num_groups": "8", "easel.vae.norm_num_groups": "4", "easel.clip.heads": "2"})

    prompts = ["a photo of an astronaut riding a horse on Mars", "", "Hello, World! 123 cafés"]
    token_ids = [token_row(tok, p, pad=EOS) for p in prompts]
    long_prompt = " ".join(["word"] * 100)
    ids = [49406] + tok.encode(long_prompt)[:75] + [49407]
    token_ids.append(ids)
    prompts.append(long_prompt)

    ref = {}
    ids = torch.tensor(token_ids[:2], dtype=torch.long)
    ref["clip.input_ids"] = ids.float()
    ref["clip.hidden"] = text_encoder(ids)[0]

    img = model_references(ref, unet, vae, np.random.RandomState(1234), latent_hw=(6, 8), context_width=8,
                           image_hw=(48, 64))

    # ---- pipelines ----
    settings = {"prompt": prompts[0], "negative_prompt": "blurry", "guidance_scale": 7.5, "steps": 2,
                "width": 64, "height": 48, "strength": 0.6, "img2img_steps": 4}
    models = (text_encoder, unet, vae)
    embed = embedder(tok, text_encoder, pad=EOS)
    txt2img_references(ref, models, tok, embed, settings, SCHEDULER_BASE)
    # img2img with DDIM and Euler Ancestral (the latter takes extra noise)
    img2img_references(ref, models, tok, embed, settings, SCHEDULER_BASE, img,
                       ("DDIMScheduler", "EulerAncestralDiscreteScheduler"))

    save_file({k: v.contiguous().float() for k, v in ref.items()}, os.path.join(OUT, "reference.safetensors"))
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump({"prompts": prompts, "token_ids": token_ids, "settings": settings,
                   "diffusers": diffusers.__version__, "torch": torch.__version__}, f, indent=1)
    all_scheduler_trajectories()
    make_sd2(tok)
    odd_size_references()
    total = sum(os.path.getsize(os.path.join(d, n)) for d, _, ns in os.walk(OUT) for n in ns)
    print("fixtures:", total, "bytes")


class HFTok:
    """The minimum of a transformers tokenizer the SD pipelines call, over open_clip's BPE."""

    model_max_length = 77

    def __init__(self, tok):
        self.tok = tok

    def __call__(self, texts, padding=None, max_length=77, truncation=True, return_tensors="pt", **_):
        if isinstance(texts, str):
            texts = [texts]
        rows = []
        for t in texts:
            ids = [49406] + self.tok.encode(t)[: max_length - 2] + [49407]
            ids = ids + [49407] * (max_length - len(ids))
            rows.append(ids)
        ids = torch.tensor(rows, dtype=torch.long)

        class R(dict):
            __getattr__ = dict.__getitem__

        return R(input_ids=ids, attention_mask=torch.ones_like(ids))

    def batch_decode(self, ids):
        return [""] * len(ids)


if __name__ == "__main__":
    main()
