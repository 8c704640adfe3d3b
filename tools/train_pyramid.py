"""Train a rate-distortion family's shared decoder and its amortised encoder (rate + lambda * MSE, lambda from q).

    python tools/train_pyramid.py ../shared/data/train --val ../shared/data/val --minutes 150
    python tools/train_pyramid.py ../shared/data/train --val ../shared/data/val --family shallow --model shallow-v2

Resumable: the checkpoint (``checkpoints/FAMILY.safetensors``, ``checkpoints/MODEL.safetensors`` for the shallow family: networks, Adam moments, the best validation
point; step, history and random-generator states in its metadata; no pickle) is written every
``--checkpoint-minutes`` and at the end; rerunning the same command continues from it, so a run
spans sessions. The selection rule, fixed before any test figure is looked at: the installed weights are those
of the validation point with the lowest mean rate-distortion loss over the qualities in ``VAL_QUALITIES``
(centre crops of the ``--val`` images; Kodak is never read here). ``--export`` writes that best point as
weights (``weights/pyramid-v1.safetensors`` by default; ``tools/promote_weights.py`` installs it).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import CropSampler, image_paths, load_rgb  # noqa: E402

from tinycodec.pyramid import layout  # noqa: E402
from tinycodec.pyramid import model as pyramid_model  # noqa: E402
from tinycodec.pyramid.model import count_parameters, quality_lambda  # noqa: E402
from tinycodec.shallow import model as shallow_model  # noqa: E402
from tinycodec.shallow.layout import ARCHITECTURES  # noqa: E402

# family -> (encoder class, decoder class, its model module)
FAMILIES = {"pyramid": (pyramid_model.AmortisedEncoder, pyramid_model.PyramidDecoder, pyramid_model),
            "shallow": (shallow_model.ShallowEncoder, shallow_model.ShallowDecoder, shallow_model)}

VAL_QUALITIES = (10, 40, 70, 95)
VAL_CROP = 384


def centre_crop(im: np.ndarray, size: int) -> torch.Tensor:
    h, w = im.shape[:2]
    s = min(size, h // 64 * 64, w // 64 * 64)  # both families need sides that are multiples of 64
    y, x = (h - s) // 2, (w - s) // 2
    return torch.from_numpy(im[y : y + s, x : x + s].transpose(2, 0, 1).astype(np.float32) / 255.0)


@torch.no_grad()
def validate(encoder, decoder, val: list[torch.Tensor], rd_forward) -> dict:
    encoder.eval()
    out: dict = {}
    losses = []
    for q in VAL_QUALITIES:
        bpps, psnrs, rd = [], [], []
        for x in val:
            qq = torch.tensor([q], device=x.device)
            bpp, mse, _ = rd_forward(encoder, decoder, x[None], qq, noise=False)
            bpps.append(bpp.item())
            psnrs.append(-10 * math.log10(mse.item()))
            rd.append(bpp.item() + quality_lambda(float(q)) * mse.item())
        out[f"q{q}"] = {"bpp": float(np.mean(bpps)), "psnr": float(np.mean(psnrs))}
        # Normalise each quality's loss by its lambda so no single quality dominates the mean.
        losses.append(float(np.mean(rd)) / quality_lambda(float(q)) * 1e3)
    encoder.train()
    out["val_loss"] = float(np.mean(losses))
    return out


def save_checkpoint(path: Path, ckpt: dict) -> None:
    """Networks, Adam moments and the best validation point as safetensors; step, history, optimiser settings
    and random-generator states as JSON in its metadata (no pickle: the file can be committed and shared)."""
    from safetensors.torch import save_file

    tensors = {f"encoder.{k}": v for k, v in ckpt["encoder"].items()}
    tensors.update({f"decoder.{k}": v for k, v in ckpt["decoder"].items()})
    for i, st in ckpt["opt"]["state"].items():
        tensors.update({f"opt.{i}.{k}": torch.as_tensor(v) for k, v in st.items()})
    best = ckpt["best"]
    if best is not None:
        tensors.update({f"best.encoder.{k}": v for k, v in best["encoder"].items()})
        tensors.update({f"best.decoder.{k}": v for k, v in best["decoder"].items()})
    meta = {"step": ckpt["step"], "history": ckpt["history"], "param_groups": ckpt["opt"]["param_groups"],
            "best": None if best is None else {"step": best["step"], "validation": best["validation"]},
            "sampler_rng": ckpt["sampler_rng"], "q_rng": ckpt["q_rng"]}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp),
              metadata={"checkpoint": json.dumps(meta)})
    tmp.replace(path)


def load_checkpoint(path: Path, device: torch.device) -> dict:
    from safetensors import safe_open
    from safetensors.torch import load_file

    tensors = load_file(str(path), device=str(device))
    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["checkpoint"])

    def part(prefix: str) -> dict:
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

    state: dict[int, dict] = {}
    for k, v in part("opt.").items():
        i, name = k.split(".", 1)
        state.setdefault(int(i), {})[name] = v.cpu() if name == "step" else v
    best = None
    if meta["best"] is not None:
        best = {**meta["best"], "encoder": {k: v.cpu() for k, v in part("best.encoder.").items()},
                "decoder": {k: v.cpu() for k, v in part("best.decoder.").items()}}
    return {"encoder": part("encoder."), "decoder": part("decoder."),
            "opt": {"state": state, "param_groups": meta["param_groups"]}, "step": meta["step"],
            "history": meta["history"], "best": best, "sampler_rng": meta["sampler_rng"], "q_rng": meta["q_rng"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="folder of training photographs (never Kodak), or a .npz of tools/pack_crops.py")
    ap.add_argument("--val", required=True, help="validation folder (checkpoint choice only)")
    ap.add_argument("--minutes", type=float, default=60.0, help="stop after this long (this run)")
    ap.add_argument("--steps", type=int, default=40000, help="length of the learning-rate schedule")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--noise-steps", type=int, default=8000,
                    help="distortion from noisy latents before this step, from rounded ones (straight-through) after")
    ap.add_argument("--step-lr-scale", type=float, default=10.0, help="learning-rate factor of the quantiser steps")
    ap.add_argument("--family", choices=sorted(FAMILIES), default="pyramid")
    ap.add_argument("--model", choices=sorted(ARCHITECTURES), default="shallow-v2",
                    help="shallow family: which architecture (the model name its weights are registered as)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (checkpoints load on either)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val-every", type=int, default=200)
    ap.add_argument("--checkpoint-minutes", type=float, default=8.0)
    ap.add_argument("--checkpoints", type=Path, default=Path("checkpoints"))
    ap.add_argument("--export", type=Path, default=None, help="write the best validation point's weights here and exit")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    encoder_class, decoder_class, family = FAMILIES[args.family]
    arch = (ARCHITECTURES[args.model],) if args.family == "shallow" else ()
    encoder, decoder = encoder_class(*arch).to(device), decoder_class(*arch).to(device)
    params = list(encoder.parameters()) + list(decoder.parameters())
    # The quantiser steps are a few scalars per grid or channel that set the rate at every quality: at the
    # common learning rate they move too slowly for the low qualities to reach low rates.
    step_params = list(decoder.steps.parameters())
    others = [p for p in params if all(p is not s for s in step_params)]
    opt = torch.optim.Adam([{"params": others, "lr_scale": 1.0},
                            {"params": step_params, "lr_scale": args.step_lr_scale}], lr=args.lr)
    ckpt_path = args.checkpoints / f"{args.model if args.family == 'shallow' else args.family}.safetensors"
    step, history, best = 0, [], None
    sampler = None
    if ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path, device)
        encoder.load_state_dict(ckpt["encoder"])
        decoder.load_state_dict(ckpt["decoder"])
        opt.load_state_dict(ckpt["opt"])
        step, history, best = ckpt["step"], ckpt["history"], ckpt.get("best")
        print(f"resumed at step {step}", flush=True)
    else:
        ckpt = None

    if args.export:
        if best is None:
            sys.exit("no validation point yet")
        metadata = {"step": str(best["step"]), "validation": json.dumps(best["validation"])}
        if args.family == "shallow":  # registered directly (an unfrozen version is replaced in place)
            from tinycodec.shallow.weights import export
            export(best["encoder"], best["decoder"], args.export, metadata, args.model)
        else:
            from tinycodec.pyramid.weights import export_decoder
            export_decoder(best["encoder"], best["decoder"], args.export, metadata)
        print(f"wrote {args.export} (step {best['step']}, val_loss {best['validation']['val_loss']:.4f})")
        return

    if args.data.endswith(".npz"):  # crops packed by tools/pack_crops.py (for a GPU machine)
        images = list(np.load(args.data)["crops"])
    else:
        images = [load_rgb(p) for p in image_paths(args.data)]
    sampler = CropSampler(images, seed=args.seed)
    if ckpt is not None:
        sampler.rng.bit_generator.state = ckpt["sampler_rng"]
    val = [centre_crop(load_rgb(p), VAL_CROP).to(device) for p in image_paths(args.val)]
    q_rng = np.random.default_rng(args.seed + 1)
    if ckpt is not None and "q_rng" in ckpt:
        q_rng.bit_generator.state = ckpt["q_rng"]
    macs = family.decoder_macs_per_pixel(*arch)

    def rd_forward(encoder, decoder, x, q, noise=True, noisy_distortion=False):
        if args.family == "pyramid":
            return family.rd_forward(encoder, decoder, x, q, noise=noise, noisy_distortion=noisy_distortion)
        return family.rd_forward(encoder, decoder, x, q, noise=noise)

    print(f"encoder {count_parameters(encoder)} params, decoder {count_parameters(decoder)} params, "
          f"decoder {macs['total']:.0f} MAC/px ({', '.join(f'{k} {v:.0f}' for k, v in macs.items())}); "
          f"{len(images)} train / {len(val)} val images, batch {args.batch}x{args.crop}^2", flush=True)

    def lr_at(s: int) -> float:
        warm = 300
        if s < warm:
            return args.lr * (s + 1) / warm
        t = min(1.0, (s - warm) / max(1, args.steps - warm))
        return args.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t)))

    def save() -> None:
        save_checkpoint(ckpt_path, {"encoder": encoder.state_dict(), "decoder": decoder.state_dict(),
                                    "opt": opt.state_dict(), "step": step, "history": history, "best": best,
                                    "sampler_rng": sampler.rng.bit_generator.state,
                                    "q_rng": q_rng.bit_generator.state})

    start = last_save = time.time()
    t0, acc = time.time(), np.zeros(3)
    while step < args.steps and time.time() - start < args.minutes * 60:
        for g in opt.param_groups:
            g["lr"] = lr_at(step) * g.get("lr_scale", 1.0)
        x = torch.from_numpy(sampler.batch(args.batch, args.crop)).to(device)
        q = torch.from_numpy(q_rng.integers(0, layout.MAX_QUALITY + 1, size=args.batch)).to(device)
        bpp, mse, _ = rd_forward(encoder, decoder, x, q, noisy_distortion=step < args.noise_steps)
        lam = quality_lambda(q.float())
        # Divide by lambda so every quality contributes gradients of the same size.
        loss = ((bpp + lam * mse) / lam).mean() * 1e3
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        step += 1
        acc += [loss.item(), bpp.mean().item(), mse.mean().item()]
        if step % 50 == 0:
            print(f"step {step} {(time.time() - t0) / (step % args.val_every or args.val_every):.2f} s/step", flush=True)
        if step % args.val_every == 0:
            n = args.val_every
            entry = {"step": step, "loss": acc[0] / n, "bpp": acc[1] / n, "psnr": -10 * math.log10(acc[2] / n),
                     "lr": lr_at(step - 1), "s_per_step": (time.time() - t0) / n,
                     "validation": validate(encoder, decoder, val, rd_forward)}
            history.append(entry)
            if best is None or entry["validation"]["val_loss"] < best["validation"]["val_loss"]:
                best = {"step": step, "validation": entry["validation"],
                        "encoder": {k: v.detach().cpu().clone() for k, v in encoder.state_dict().items()},
                        "decoder": {k: v.detach().cpu().clone() for k, v in decoder.state_dict().items()}}
            print(json.dumps(entry), flush=True)
            t0, acc = time.time(), np.zeros(3)
        if time.time() - last_save > args.checkpoint_minutes * 60:
            save()
            last_save = time.time()
    save()
    print(f"stopped at step {step}", flush=True)


if __name__ == "__main__":
    main()
