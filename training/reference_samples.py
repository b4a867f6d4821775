#!/usr/bin/python3
"""Reference samples of the built-in model, made by the training code's own DDIM + CFG sampler
(diffusion.sample_cfg on the exported BF16 weights, run in float32), for svdquant's JS pipeline to
reproduce from the same starting noise (test/pipelines-builtin.test.ts).

Writes test/data/fashion-dit/reference_samples.safetensors:
  noise   F32 [N, 1, 28, 28]  torch.randn(generator=torch.Generator().manual_seed(NOISE_SEED))
  labels  I64 [N]
  samples F32 [N, 1, 28, 28]  sample_cfg(...) output before clamping ([-1, 1] pixel scale)
  logits  F32 [N, 10]         the committed classifier on samples.clamp(-1, 1)
metadata: steps, guidance, noise seed, torch version, threads.

Run: /usr/bin/python3 training/reference_samples.py   (Debian's python3-torch, CPU, 1 thread)
"""

import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from classifier import FashionClassifier  # noqa: E402
from diffusion import sample_cfg  # noqa: E402
from dit import DiT  # noqa: E402
from safetensors_io import load_file, save_file  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_DIR = os.path.join(REPO_ROOT, "models", "fashion-dit")
OUT = os.path.join(REPO_ROOT, "test", "data", "fashion-dit", "reference_samples.safetensors")
LABELS = [0, 1, 3, 5, 7, 8, 9, 2]
NOISE_SEED = 31
STEPS = 50
GUIDANCE = 4.0


def main():
    torch.set_num_threads(1)
    with open(os.path.join(MODEL_DIR, "transformer", "config.json"), encoding="utf-8") as f:
        config = {k: v for k, v in json.load(f).items() if not k.startswith("_")}
    model = DiT(config)
    weights, _ = load_file(os.path.join(MODEL_DIR, "transformer", "diffusion_pytorch_model.safetensors"))
    model.load_state_dict(weights, strict=True)
    model.eval()
    labels = torch.tensor(LABELS, dtype=torch.int64)
    noise = torch.randn((len(LABELS), config["in_channels"], config["sample_size"], config["sample_size"]),
                        generator=torch.Generator().manual_seed(NOISE_SEED))
    samples = sample_cfg(model, labels, noise, STEPS, GUIDANCE, null_class=config["num_embeds_ada_norm"])
    classifier = FashionClassifier()
    classifier_weights, _ = load_file(os.path.join(MODEL_DIR, "classifier", "classifier.safetensors"))
    classifier.load_state_dict(classifier_weights, strict=True)
    classifier.eval()
    with torch.no_grad():
        logits = classifier(samples.clamp(-1, 1))
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    save_file({"noise": noise, "labels": labels, "samples": samples, "logits": logits}, OUT, metadata={
        "steps": STEPS, "guidance": GUIDANCE, "noise_seed": NOISE_SEED, "torch": torch.__version__, "threads": 1,
        "made_by": "training/reference_samples.py (diffusion.sample_cfg, exported BF16 weights run in float32)",
    })
    print(f"wrote {OUT}: predicted {logits.argmax(1).tolist()} for labels {LABELS}")


if __name__ == "__main__":
    main()
