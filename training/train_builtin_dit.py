#!/usr/bin/python3
"""Train svdquant's built-in model: a small class-conditional pixel-space DiT on Fashion-MNIST, in the
layout of diffusers' DiTTransformer2DModel, and export it as a diffusers DiTPipeline folder.

Stages (all by default, each resumable from the work directory):
  train      DDPM training (eps prediction, linear betas 1e-4..0.02 over 1000 steps, label dropout to
             the null class), EMA weights, a checkpoint every --checkpoint-every steps
  export     EMA weights as BF16 safetensors + config.json, scheduler_config.json, model_index.json
  classifier a small CNN trained on the training split, scored on the test split, saved as F32
  evaluate   DDIM + classifier-free guidance samples from the exported BF16 weights, scored by the
             classifier per class; a 10x10 grid PNG (rows = classes); evaluation.json

Run with Debian's python3-torch (CPU): nice -n 10 /usr/bin/python3 training/train_builtin_dit.py
Smoke test in a few minutes: /usr/bin/python3 training/train_builtin_dit.py --quick
"""

import argparse
import json
import os
import platform
import sys
import time

# OpenMP threads that busy-wait fight the other processes on a shared machine; sleeping ones do not.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from classifier import FashionClassifier, predict, train_classifier  # noqa: E402
from diffusion import add_noise, alphas_cumprod, sample_cfg  # noqa: E402
from dit import DiT, default_config  # noqa: E402
from export import export_pipeline, write_json  # noqa: E402
from fashion_mnist import CLASS_NAMES, DEFAULT_DIR, load_split  # noqa: E402
from safetensors_io import load_file, save_file  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ("train", "export", "classifier", "evaluate")
# Hyper-parameters that define a training run: a checkpoint only resumes a run with the same ones.
RUN_KEYS = ("seed", "hidden", "heads", "layers", "patch", "batch", "lr", "warmup", "ema_decay",
            "label_dropout", "grad_clip")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset of " + ",".join(STAGES))
    p.add_argument("--data-dir", default=DEFAULT_DIR, help="Fashion-MNIST IDX .gz files")
    p.add_argument("--work-dir", default=os.path.join(REPO_ROOT, ".scratch", "fashion-dit"),
                   help="checkpoints and logs (not committed)")
    p.add_argument("--out-dir", default=os.path.join(REPO_ROOT, "models", "fashion-dit"),
                   help="the exported diffusers folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    # model
    p.add_argument("--hidden", type=int, default=128, help="inner dim = heads * head dim")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--patch", type=int, default=4, choices=(2, 4))
    # training
    p.add_argument("--steps", type=int, default=3200, help="optimizer steps in total (resume may extend)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=5e-4, help="AdamW, constant after the warm-up")
    p.add_argument("--warmup", type=int, default=300, help="linear learning-rate warm-up steps")
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--label-dropout", type=float, default=0.1, help="probability of the null class")
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--checkpoint-every", type=int, default=250)
    p.add_argument("--log-every", type=int, default=50)
    # classifier and evaluation
    p.add_argument("--classifier-epochs", type=int, default=4)
    p.add_argument("--samples-per-class", type=int, default=100)
    p.add_argument("--sample-steps", type=int, default=50, help="DDIM steps")
    p.add_argument("--guidance", type=float, default=4.0)
    p.add_argument("--heldout", type=int, default=2000, help="test images for the held-out eps loss")
    p.add_argument("--quick", action="store_true",
                   help="a few steps of everything into .scratch/fashion-dit-quick (smoke test)")
    args = p.parse_args(argv)
    if args.quick:
        quick_dir = os.path.join(REPO_ROOT, ".scratch", "fashion-dit-quick")
        args.work_dir = quick_dir
        args.out_dir = os.path.join(quick_dir, "export")
        args.steps, args.batch, args.warmup = 20, 16, 5
        args.checkpoint_every, args.log_every = 10, 5
        args.classifier_epochs, args.samples_per_class, args.sample_steps, args.heldout = 1, 2, 5, 200
    args.stages = [s for s in args.stages.split(",") if s]
    bad = [s for s in args.stages if s not in STAGES]
    if bad:
        p.error(f"unknown stages {bad}; expected a subset of {','.join(STAGES)}")
    if args.hidden % args.heads != 0:
        p.error(f"--hidden {args.hidden} must be a multiple of --heads {args.heads}")
    return args


def log(message, work_dir=None):
    line = f"[{time.strftime('%H:%M:%S')}] {message}"
    print(line, flush=True)
    if work_dir:
        with open(os.path.join(work_dir, "log.txt"), "a", encoding="utf-8") as f:
            f.write(line + "\n")


def model_config(args):
    return default_config(
        num_attention_heads=args.heads,
        attention_head_dim=args.hidden // args.heads,
        num_layers=args.layers,
        patch_size=args.patch,
        in_channels=1,
        out_channels=1,
        sample_size=28,
        num_embeds_ada_norm=len(CLASS_NAMES),
    )


def atomic_torch_save(value, path):
    tmp = f"{path}.tmp-{os.getpid()}"
    torch.save(value, tmp)
    os.replace(tmp, path)


def step_generator(seed, step):
    """Each step's noise, timesteps and label dropout come from their own seed, so that a resumed run
    draws exactly what an uninterrupted one would."""
    return torch.Generator().manual_seed(seed * 10_000_019 + step)


def batch_indices(seed, step, batch, count):
    """Epoch-wise shuffling without replacement; the permutation of an epoch depends on (seed, epoch)."""
    per_epoch = count // batch
    epoch, position = divmod(step, per_epoch)
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed * 7919 + epoch))
    return order[position * batch : (position + 1) * batch]


def train(args):
    log_to = args.work_dir
    run = {k: getattr(args, k) for k in RUN_KEYS}
    config = model_config(args)
    images, labels = load_split("train", args.data_dir)
    null_class = config["num_embeds_ada_norm"]

    torch.manual_seed(args.seed)
    model = DiT(config)
    model.initialize_weights(args.seed)
    ema = DiT(config)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    step, train_seconds, history = 0, 0.0, []

    checkpoint_path = os.path.join(args.work_dir, "checkpoint.pt")
    if args.quick and os.path.exists(checkpoint_path):
        os.remove(checkpoint_path)  # a smoke test always starts from scratch
    if os.path.exists(checkpoint_path):
        state = torch.load(checkpoint_path)
        if state["run"] != run or state["config"] != config:
            raise SystemExit(f"{checkpoint_path} belongs to another run ({state['run']}); "
                             "use another --work-dir or delete it")
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        step, train_seconds, history = state["step"], state["train_seconds"], state["history"]
        log(f"resumed at step {step} ({train_seconds / 60:.1f} min trained)", log_to)
    params = sum(p.numel() for p in model.parameters())
    log(f"DiT {params / 1e6:.2f}M parameters, config {json.dumps(config, sort_keys=True)}", log_to)
    log(f"training steps {step}..{args.steps}, batch {args.batch}, lr {args.lr}, threads {torch.get_num_threads()}",
        log_to)

    cumprod = alphas_cumprod()
    model.train()
    window, window_start = [], time.perf_counter()

    def save_checkpoint():
        atomic_torch_save({"run": run, "config": config, "step": step, "model": model.state_dict(),
                           "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
                           "train_seconds": train_seconds, "history": history}, checkpoint_path)

    while step < args.steps:
        started = time.perf_counter()
        generator = step_generator(args.seed, step)
        index = batch_indices(args.seed, step, args.batch, len(images))
        clean, label = images[index], labels[index].clone()
        timesteps = torch.randint(0, len(cumprod), (len(index),), generator=generator)
        noise = torch.randn(clean.shape, generator=generator)
        dropped = torch.rand(len(index), generator=generator) < args.label_dropout
        label[dropped] = null_class

        for group in optimizer.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / max(1, args.warmup))
        loss = F.mse_loss(model(add_noise(clean, noise, timesteps, cumprod), timesteps, label), noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        optimizer.step()
        decay = min(args.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema.parameters(), model.parameters()):
                e.mul_(decay).add_(p, alpha=1 - decay)
        step += 1
        train_seconds += time.perf_counter() - started
        window.append(loss.item())

        if step % args.log_every == 0 or step == args.steps:
            mean = sum(window) / len(window)
            per_step = (time.perf_counter() - window_start) / len(window)
            history.append({"step": step, "loss": mean, "train_minutes": train_seconds / 60})
            log(f"step {step}/{args.steps} loss {mean:.4f} {per_step:.2f} s/step "
                f"eta {(args.steps - step) * per_step / 60:.0f} min", log_to)
            window, window_start = [], time.perf_counter()
        if step % args.checkpoint_every == 0 or step == args.steps:
            save_checkpoint()
    return checkpoint_path


@torch.no_grad()
def heldout_loss(model, args):
    """Mean eps-MSE on the first --heldout test images, with timesteps and noise from a fixed seed."""
    images, labels = load_split("t10k", args.data_dir)
    images, labels = images[: args.heldout], labels[: args.heldout]
    generator = torch.Generator().manual_seed(12345)
    cumprod = alphas_cumprod()
    timesteps = torch.randint(0, len(cumprod), (len(images),), generator=generator)
    noise = torch.randn(images.shape, generator=generator)
    total = 0.0
    for i in range(0, len(images), 250):
        sl = slice(i, i + 250)
        prediction = model(add_noise(images[sl], noise[sl], timesteps[sl], cumprod), timesteps[sl], labels[sl])
        total += F.mse_loss(prediction, noise[sl], reduction="sum").item()
    return total / noise.numel()


def export(args):
    state = torch.load(os.path.join(args.work_dir, "checkpoint.pt"))
    weights = export_pipeline(args.out_dir, state["config"], state["ema"], CLASS_NAMES,
                              metadata={"step": str(state["step"])})
    training = {
        "steps": state["step"],
        "train_minutes": state["train_seconds"] / 60,
        "final_train_loss": state["history"][-1]["loss"] if state["history"] else None,
        "loss_history": state["history"],
        "hyperparameters": state["run"],
        "parameters": sum(v.numel() for v in state["model"].values()),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"torch {torch.__version__}, {torch.get_num_threads()} threads",
    }
    write_json(os.path.join(args.work_dir, "training.json"), training)
    log(f"exported {weights} ({os.path.getsize(weights)} bytes) from step {state['step']}", args.work_dir)


def load_exported(args):
    with open(os.path.join(args.out_dir, "transformer", "config.json"), encoding="utf-8") as f:
        config = {k: v for k, v in json.load(f).items() if not k.startswith("_")}
    model = DiT(config)
    tensors, _ = load_file(os.path.join(args.out_dir, "transformer", "diffusion_pytorch_model.safetensors"))
    model.load_state_dict(tensors, strict=True)
    return model.eval(), config


def classifier_stage(args):
    images, labels = load_split("train", args.data_dir)
    test_images, test_labels = load_split("t10k", args.data_dir)
    if args.quick:
        images, labels = images[:5000], labels[:5000]
    started = time.perf_counter()
    model = train_classifier(images, labels, args.classifier_epochs, 128, args.seed,
                             lambda m: log(m, args.work_dir))
    accuracy = (predict(model, test_images) == test_labels).float().mean().item()
    out = os.path.join(args.out_dir, "classifier")
    os.makedirs(out, exist_ok=True)
    save_file(dict(model.state_dict()), os.path.join(out, "classifier.safetensors"), dtype="F32",
              metadata={"test_accuracy": f"{accuracy:.4f}", "input": "[B,1,28,28] in [-1,1]"})
    write_json(os.path.join(args.work_dir, "classifier.json"),
               {"test_accuracy": accuracy, "epochs": args.classifier_epochs,
                "train_minutes": (time.perf_counter() - started) / 60})
    log(f"classifier test accuracy {accuracy:.4f}", args.work_dir)


def save_grid(samples, row_names, cols, path, scale=2, gap=2, label_width=80):
    """Grayscale grid PNG of [rows*cols, 1, 28, 28] samples in [-1, 1], row-major, each row named on
    its left, white gaps."""
    from PIL import Image, ImageDraw

    rows = len(row_names)
    size = samples.shape[-1]
    height = rows * size + (rows + 1) * gap
    width = cols * size + (cols + 1) * gap
    canvas = np.full((height, width), 255, dtype=np.uint8)
    pixels = ((samples[:, 0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    for i in range(rows * cols):
        r, c = divmod(i, cols)
        y, x = gap + r * (size + gap), gap + c * (size + gap)
        canvas[y : y + size, x : x + size] = pixels[i]
    grid = Image.fromarray(canvas, mode="L").resize((width * scale, height * scale), Image.NEAREST)
    image = Image.new("L", (label_width + grid.width, grid.height), 255)
    image.paste(grid, (label_width, 0))
    draw = ImageDraw.Draw(image)
    for r, name in enumerate(row_names):
        draw.text((4, (gap + r * (size + gap) + size // 2) * scale - 5), name, fill=0)
    tmp = f"{path}.tmp-{os.getpid()}.png"
    image.save(tmp)
    os.replace(tmp, path)


def evaluate(args):
    model, config = load_exported(args)
    tensors, _ = load_file(os.path.join(args.out_dir, "classifier", "classifier.safetensors"))
    classifier = FashionClassifier()
    classifier.load_state_dict(tensors)
    classifier.eval()
    per_class = args.samples_per_class
    num_classes = config["num_embeds_ada_norm"]
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    noise = torch.randn((len(labels), config["in_channels"], config["sample_size"], config["sample_size"]),
                        generator=torch.Generator().manual_seed(args.seed + 2024))
    started = time.perf_counter()
    chunks = []
    for i in range(0, len(labels), 100):
        chunks.append(sample_cfg(model, labels[i : i + 100], noise[i : i + 100], args.sample_steps,
                                 args.guidance, null_class=num_classes))
        log(f"sampled {i + len(chunks[-1])}/{len(labels)}", args.work_dir)
    samples = torch.cat(chunks).clamp(-1, 1)
    sample_minutes = (time.perf_counter() - started) / 60
    predicted = predict(classifier, samples)
    correct = predicted == labels
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    for truth, guess in zip(labels.tolist(), predicted.tolist()):
        confusion[truth, guess] += 1
    result = {
        "samples_per_class": per_class,
        "ddim_steps": args.sample_steps,
        "guidance": args.guidance,
        "weights": "exported BF16, run in fp32",
        "noise_seed": args.seed + 2024,
        "accuracy": correct.float().mean().item(),
        "accuracy_per_class": {CLASS_NAMES[c]: correct[labels == c].float().mean().item()
                               for c in range(num_classes)},
        "confusion": confusion.tolist(),
        "sample_minutes": sample_minutes,
        "heldout_eps_mse": heldout_loss(model, args),
    }
    for name in ("training.json", "classifier.json"):
        path = os.path.join(args.work_dir, name)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                result[name[: -len(".json")]] = json.load(f)
    write_json(os.path.join(args.out_dir, "evaluation.json"), result)
    # Grid: the first 10 samples of each class, one class per row.
    grid_cols = min(10, per_class)
    grid = torch.cat([samples[labels == c][:grid_cols] for c in range(num_classes)])
    save_grid(grid, CLASS_NAMES[:num_classes], grid_cols, os.path.join(args.out_dir, "samples.png"))
    log(f"sample accuracy {result['accuracy']:.4f} "
        + " ".join(f"{k}={v:.2f}" for k, v in result["accuracy_per_class"].items()), args.work_dir)
    log(f"held-out eps MSE {result['heldout_eps_mse']:.4f}; sampling took {sample_minutes:.1f} min",
        args.work_dir)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    os.makedirs(args.work_dir, exist_ok=True)
    os.makedirs(args.out_dir, exist_ok=True)
    log(f"stages {args.stages}, work dir {args.work_dir}, out dir {args.out_dir}", args.work_dir)
    if "train" in args.stages:
        train(args)
    if "export" in args.stages:
        export(args)
    if "classifier" in args.stages:
        classifier_stage(args)
    if "evaluate" in args.stages:
        evaluate(args)


if __name__ == "__main__":
    main()
