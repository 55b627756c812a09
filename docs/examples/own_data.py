"""Train on your own data: a ``.npz`` of your array to a trained, saved, reloaded, sampled BFN.

The "own data" here are 8x8 grey-level images of squares and discs (16 grey levels, a label
0 = square, 1 = disc), made with numpy and written to ``shapes.npz``, as you would write
yours. The script then

1. trains a class-conditional BFN on the file, named by a configuration
   (``dataset: shapes.npz`` with its ``data_options``: 16-bin discretised data, the array
   names, 10% held out for validation) through ``pyro_bfn.train``;
2. saves the EMA model with ``pyro_bfn.save_pretrained`` and loads it back with
   ``pyro_bfn.from_pretrained``;
3. draws samples of each class (classifier-free guidance, as the model was trained with
   ``context_dropout``) and compares their shapes with the data's: the fraction of each
   sample's lit pixels that lie inside its bounding box's inscribed disc is high for discs and
   lower for squares.

Run::

    python docs/examples/own_data.py           # about a minute on one CPU thread
    python docs/examples/own_data.py --smoke   # seconds
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

import pyro_bfn
from pyro_bfn.plotting import save_image_grid


def make_shapes(count: int, seed: int = 0) -> dict:
    """``images`` (count, 1, 8, 8) uint8 grey levels 0..15 and ``labels`` (count,): a square
    (0) or a disc (1) of radius 2 or 3 and level 8..15 on a dark background (level 0..2)."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:8, 0:8] + 0.5
    images = rng.integers(0, 3, size=(count, 1, 8, 8)).astype(np.uint8)
    labels = rng.integers(0, 2, size=count)
    for n in range(count):
        radius = rng.integers(2, 4)
        centre = rng.uniform(radius, 8 - radius, size=2)
        if labels[n] == 0:
            inside = (np.abs(rows - centre[0]) <= radius) & (np.abs(cols - centre[1]) <= radius)
        else:
            inside = (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2
        images[n, 0][inside] = rng.integers(8, 16)
    return {"images": images, "labels": labels}


def roundness(levels: torch.Tensor) -> torch.Tensor:
    """Per image (N, 1, 8, 8) of levels: the fraction of the lit pixels (level >= 6) that lie in
    the disc inscribed in their bounding box; 1 for a disc, about pi/4 for a square."""
    lit = levels[:, 0] >= 6
    rows, cols = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    scores = []
    for mask in lit:
        if mask.sum() < 2:
            scores.append(float("nan"))
            continue
        r, c = rows[mask], cols[mask]
        centre_r, centre_c = (r.min() + r.max()) / 2, (c.min() + c.max()) / 2
        radius = max(r.max() - r.min(), c.max() - c.min()) / 2 + 0.5
        scores.append((((r - centre_r) ** 2 + (c - centre_c) ** 2) <= radius**2 * 0.8).float().mean().item())
    return torch.tensor(scores)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a few steps, to check that everything runs")
    parser.add_argument("--out", default=None,
                        help="keep the data, the run, the model and the samples here (default: a temporary directory)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.out is not None:
        return run(Path(args.out), args.smoke)
    with tempfile.TemporaryDirectory(prefix="own_data_") as out:
        return run(Path(out), args.smoke)


def run(out: Path, smoke: bool) -> dict:
    """The four steps, writing into ``out``."""
    out.mkdir(parents=True, exist_ok=True)

    # 1. your data, as a .npz of arrays
    np.savez(out / "shapes.npz", **make_shapes(256 if smoke else 4096))

    # 2. train: the file and what its arrays are, in the configuration
    config = pyro_bfn.TrainConfig(
        dataset=str(out / "shapes.npz"),
        data_options={"type": "discretised", "num_bins": 16, "x": "images", "labels": "labels",
                      "valid_fraction": 0.1},
        context_dropout=0.1,  # so that the model is also unconditional: classifier-free guidance
        backbone="mlp_small",
        backbone_options={"hidden": 64, "depth": 2} if smoke else {},
        batch_size=32 if smoke else 64,
        lr=1e-3,
        max_steps=20 if smoke else 3000,
        eval_interval=10 if smoke else 1000,
        eval_examples=64 if smoke else 1000,
        ckpt_interval=0,
        log_interval=10 if smoke else 250,
        autocast="none",
        device="cpu",
        progress=False,
        out_dir=str(out / "run"),
    )
    result = pyro_bfn.train(config, overwrite=True)
    valid = result.summary["last_valid"]
    print(f"trained {result.summary['step']} steps in {result.summary['train_wall_seconds']} s; validation bound "
          f"{valid['nats']:.1f} ± {valid['stderr']:.1f} nats/image ({valid['bits_per_dim']:.3f} bits/pixel)")

    # 3. save and reload
    pyro_bfn.save_pretrained(result.model, out / "pretrained")
    bfn = pyro_bfn.from_pretrained(out / "pretrained")
    print(f"saved and reloaded {out / 'pretrained'}: {json.loads((out / 'pretrained' / 'config.json').read_text())['data_options']}")

    # 4. sample each class and compare the shapes with the data's
    count = 8 if smoke else 64
    labels = torch.arange(2 * count) // count  # count squares, then count discs
    generator = torch.Generator().manual_seed(0)
    samples = bfn.sample(2 * count, 20 if smoke else 100, context=labels, guidance_scale=1.0, generator=generator)
    levels = bfn.data_type.to_integers(samples)
    save_image_grid(samples, out / "samples.png", scale=4, padding_value=0.15)
    data = make_shapes(512, seed=1)
    data_roundness = roundness(torch.as_tensor(data["images"]))
    sample_roundness = roundness(levels)
    summary = {"smoke": smoke, "steps": result.summary["step"], "valid_bits_per_pixel": valid["bits_per_dim"]}
    for label, name in enumerate(("square", "disc")):
        summary[f"data_roundness_{name}"] = data_roundness[torch.as_tensor(data["labels"]) == label].nanmean().item()
        summary[f"sample_roundness_{name}"] = sample_roundness[labels == label].nanmean().item()
        print(f"{name}s: roundness of the data {summary[f'data_roundness_{name}']:.2f}, "
              f"of the samples {summary[f'sample_roundness_{name}']:.2f}")
    print(f"sample grid: {out / 'samples.png'}")
    return summary


if __name__ == "__main__":
    main()
