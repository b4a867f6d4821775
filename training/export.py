"""Writes a diffusers pipeline folder (DiTPipeline layout) for a trained pixel-space DiT."""

import json
import os

from diffusion import scheduler_config
from safetensors_io import save_file

DIFFUSERS_VERSION = "0.30.3"


def write_json(path, value):
    """JSON as diffusers' save_config writes it (indent 2, sorted keys, trailing newline), atomically."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(value, indent=2, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def transformer_config(config):
    return {"_class_name": "DiTTransformer2DModel", "_diffusers_version": DIFFUSERS_VERSION, **config}


def model_index(class_names):
    # A pixel-space model has no VAE; diffusers writes an absent component as [null, null].
    return {
        "_class_name": "DiTPipeline",
        "_diffusers_version": DIFFUSERS_VERSION,
        "id2label": {str(i): name for i, name in enumerate(class_names)},
        "scheduler": ["diffusers", "DDIMScheduler"],
        "transformer": ["diffusers", "DiTTransformer2DModel"],
        "vae": [None, None],
    }


def export_pipeline(out_dir, config, state_dict, class_names, metadata=None):
    """model_index.json, transformer/{config.json, diffusion_pytorch_model.safetensors (BF16)},
    scheduler/scheduler_config.json. Returns the weights file's path."""
    os.makedirs(os.path.join(out_dir, "transformer"), exist_ok=True)
    os.makedirs(os.path.join(out_dir, "scheduler"), exist_ok=True)
    weights = os.path.join(out_dir, "transformer", "diffusion_pytorch_model.safetensors")
    save_file(state_dict, weights, dtype="BF16", metadata={"format": "pt", **(metadata or {})})
    write_json(os.path.join(out_dir, "transformer", "config.json"), transformer_config(config))
    write_json(os.path.join(out_dir, "scheduler", "scheduler_config.json"), scheduler_config())
    write_json(os.path.join(out_dir, "model_index.json"), model_index(class_names))
    return weights
