"""Tiny adapters of every format easel reads, for the tiny SD 1.x and 2.x fixtures, and
references computed by peft with them applied (`make_fixtures.py --adapters` runs this).

For each model (tests/fixtures/tiny-sd/ and tiny-sd2/, which must exist) it writes under
tests/fixtures/adapters/<model>/:
  lora.safetensors   kohya / A1111 LoRA (lora_unet_* / lora_te_*, lora_down/up, alpha != rank):
                     attention, feed-forward and proj_in/out layers, and the text encoder
  locon.safetensors  kohya LoCon: the above plus the resnets' convolutions (3x3 down-projections),
                     time embedding projections, shortcut, down- and upsampler convolutions
  loha.safetensors   LyCORIS LoHa (hada_w1_a/b, hada_w2_a/b, alpha), Tucker form (hada_t1/t2) on
                     every 3x3 convolution, text encoder included
  lokr.safetensors   LyCORIS LoKr (lokr_w1 or lokr_w1_a/b, lokr_w2 or lokr_w2_a/b, lokr_t2 on 3x3
                     convolutions, alpha = rank), text encoder included
  peft.safetensors   diffusers / PEFT (unet.* and text_encoder.* lora_A/lora_B, no alpha)
  bad_keys.safetensors  the LoRA plus tensors that map onto no layer (a loader must refuse it)
  reference.safetensors  for each adapter <a>, computed by peft's layers in float32 with the
                     adapter at weight 1: <a>.clip.hidden (the base references' token rows),
                     <a>.unet.out (the base references' UNet inputs) and <a>.pipe.image (DDIM,
                     two steps, guidance 7.5, the prompt and "" from fixed latents `pipe.latents`)

The adapters' values are float16-exact and stored as float16, as the models are.
"""

import json
import os
import re

import numpy as np
import torch
from peft import LoHaConfig, LoKrConfig, LoraConfig, inject_adapter_in_model
from safetensors.torch import load_file, save_file

from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextModel

ATTENTION = r".*(to_q|to_k|to_v|to_out\.0|ff\.net\.0\.proj|ff\.net\.2|proj_in|proj_out)"
CONVOLUTIONS = r".*(resnets\.\d+\.(conv1|conv2|conv_shortcut|time_emb_proj)|downsamplers\.0\.conv|upsamplers\.0\.conv)"
TEXT = r".*(q_proj|k_proj|v_proj|out_proj|fc1|fc2)"
RANK = 2


def kohya_name(component, module):
    return {"unet": "lora_unet_", "text_encoder": "lora_te_"}[component] + module.replace(".", "_")


def adapters():
    """name -> (peft config for the UNet, for the text encoder or None, how to name tensors)."""
    both = f"({ATTENTION}|{CONVOLUTIONS})"
    return {
        "lora": (LoraConfig(r=RANK, lora_alpha=3.0, target_modules=ATTENTION),
                 LoraConfig(r=RANK, lora_alpha=3.0, target_modules=TEXT), "kohya"),
        "locon": (LoraConfig(r=RANK, lora_alpha=1.0, target_modules=both), None, "kohya"),
        "loha": (LoHaConfig(r=RANK, alpha=3.0, target_modules=both, use_effective_conv2d=True),
                 LoHaConfig(r=RANK, alpha=3.0, target_modules=TEXT), "lycoris"),
        "lokr": (LoKrConfig(r=RANK, alpha=float(RANK), target_modules=both, use_effective_conv2d=True,
                            decompose_both=True),
                 LoKrConfig(r=RANK, alpha=float(RANK), target_modules=TEXT), "lycoris"),
        "peft": (LoraConfig(r=RANK, lora_alpha=float(RANK), target_modules=ATTENTION),
                 LoraConfig(r=RANK, lora_alpha=float(RANK), target_modules=TEXT), "peft"),
    }


ADAPTER_PARAM = re.compile(r"^(.*)\.(lora_A|lora_B|hada_\w+|lokr_\w+)\.default(\.weight)?$")


def fill_and_export(model, component, naming, alpha, rng):
    """Gives every adapter parameter of `model` float16-exact random values; returns the
    tensors under the file's names."""
    out = {}
    modules = set()
    for name, param in model.named_parameters():
        m = ADAPTER_PARAM.match(name)
        if not m:
            continue
        module, part = m.group(1), m.group(2)
        if component == "text_encoder" and not module.startswith("text_model."):
            # transformers v5 saves CLIPTextModel without its `text_model.` level; adapter
            # files name it (kohya's `lora_te_text_model_…`, diffusers' `text_encoder.text_model.…`).
            module = "text_model." + module
        values = rng.standard_normal(tuple(param.shape)).astype(np.float32) * 0.3
        param.data = torch.from_numpy(values).half().float()
        modules.add(module)
        if naming == "peft":
            key = f"{component}.{module}.{part}.weight"
        else:
            part = {"lora_A": "lora_down.weight", "lora_B": "lora_up.weight"}.get(part, part)
            key = f"{kohya_name(component, module)}.{part}"
        out[key] = param.data.clone().half()
    if naming != "peft":
        for module in modules:
            out[f"{kohya_name(component, module)}.alpha"] = torch.tensor(alpha).half()
    return out


def load(folder):
    text_encoder = CLIPTextModel.from_pretrained(os.path.join(folder, "text_encoder")).float().eval()
    unet = UNet2DConditionModel.from_pretrained(os.path.join(folder, "unet")).float().eval()
    vae = AutoencoderKL.from_pretrained(os.path.join(folder, "vae")).float().eval()
    return text_encoder, unet, vae


def references(out, name, models, base, token_ids, settings, scheduler_config):
    text_encoder, unet, vae = models
    ids = torch.tensor(token_ids[:2], dtype=torch.long)
    out[f"{name}.clip.hidden"] = text_encoder(ids)[0]
    t = torch.tensor([981.0, 981.0])
    out[f"{name}.unet.out"] = unet(base["unet.sample"], t, encoder_hidden_states=base["unet.context"]).sample
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    latent_shape = (1, 4, settings["height"] // scale, settings["width"] // scale)
    latents = torch.from_numpy(np.random.RandomState(99).standard_normal(latent_shape).astype(np.float32))
    out["pipe.latents"] = latents
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=None, unet=unet,
        scheduler=DDIMScheduler.from_config(scheduler_config), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False,
    )
    embeds = text_encoder(ids)[0]
    image = pipe(prompt_embeds=embeds[:1], negative_prompt_embeds=embeds[1:2], num_inference_steps=2,
                 guidance_scale=7.5, height=settings["height"], width=settings["width"], latents=latents.clone(),
                 output_type="np").images
    out[f"{name}.pipe.image"] = torch.from_numpy(image)


def make(fixtures, model_dir, reference_name, scheduler_config):
    folder = os.path.join(fixtures, model_dir)
    with open(os.path.join(fixtures, reference_name + ".json")) as f:
        meta = json.load(f)
    base = load_file(os.path.join(fixtures, reference_name + ".safetensors"))
    target = os.path.join(fixtures, "adapters", model_dir)
    os.makedirs(target, exist_ok=True)
    ref = {}
    settings = {"width": meta["settings"]["width"], "height": meta["settings"]["height"]}
    with torch.no_grad():
        text_encoder, unet, vae = load(folder)
        references(ref, "base", (text_encoder, unet, vae), base, meta["token_ids"], settings, scheduler_config)
    for index, (name, (unet_config, text_config, naming)) in enumerate(adapters().items()):
        rng = np.random.RandomState(4000 + index)
        text_encoder, unet, vae = load(folder)
        unet = inject_adapter_in_model(unet_config, unet)
        tensors = fill_and_export(unet, "unet", naming, getattr(unet_config, "lora_alpha", None)
                                  or getattr(unet_config, "alpha"), rng)
        if text_config is not None:
            text_encoder = inject_adapter_in_model(text_config, text_encoder)
            tensors.update(fill_and_export(text_encoder, "text_encoder", naming,
                                           getattr(text_config, "lora_alpha", None) or getattr(text_config, "alpha"),
                                           rng))
        save_file(tensors, os.path.join(target, f"{name}.safetensors"))
        if name == "lora":
            bad = dict(tensors)
            bad["lora_unet_down_blocks_9_attentions_0_proj_in.lora_down.weight"] = torch.zeros(RANK, 4).half()
            bad["lora_unet_down_blocks_9_attentions_0_proj_in.lora_up.weight"] = torch.zeros(4, RANK).half()
            bad["lora_te_text_model_final_layer_norm.lora_down.weight"] = torch.zeros(RANK, 4).half()
            save_file(bad, os.path.join(target, "bad_keys.safetensors"))
        with torch.no_grad():
            unet.eval()
            text_encoder.eval()
            references(ref, name, (text_encoder, unet, vae), base, meta["token_ids"], settings, scheduler_config)
        print(model_dir, name, len(tensors), "tensors")
    save_file({k: v.contiguous().float() for k, v in ref.items()}, os.path.join(target, "reference.safetensors"))
    total = sum(os.path.getsize(os.path.join(target, n)) for n in os.listdir(target))
    print(model_dir, "adapter fixtures:", total, "bytes")


def main(fixtures, sd1_scheduler, sd2_scheduler):
    torch.set_grad_enabled(False)
    make(fixtures, "tiny-sd", "reference", sd1_scheduler)
    make(fixtures, "tiny-sd2", "reference_sd2", sd2_scheduler)
