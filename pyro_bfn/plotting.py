"""Pictures of what a run produces: sample grids, text samples, training curves (matplotlib,
headless backend)."""

from __future__ import annotations

import csv
import math
import os

import torch

from .datasets import TEXT8_ALPHABET as _ALPHABET  # index 0 is the space, 1..26 are a..z

__all__ = ["decode_symbols", "plot_training_curves", "save_image_grid", "save_text_samples"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """Integers 0/1 (binary), 0..255, or floats in [-1, 1] / [0, 1] -> floats in [0, 1]."""
    images = images.detach().cpu()
    if not images.is_floating_point():
        top = 1.0 if images.max() <= 1 else 255.0
        return images.float() / top
    if images.min() < 0:
        return ((images + 1) / 2).clamp(0, 1)
    return images.clamp(0, 1)


def save_image_grid(images: torch.Tensor, path, nrow: int | None = None) -> str:
    """Write ``images`` (shape ``(N, C, H, W)``, C = 1 or 3) as one PNG grid; returns ``path``."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must have shape (N, 1 or 3, H, W), got {tuple(images.shape)}")
    images = _to_unit_range(images)
    count, channels, height, width = images.shape
    nrow = nrow or math.ceil(math.sqrt(count))
    ncol = math.ceil(count / nrow)
    grid = torch.ones(channels, ncol * (height + 2) + 2, nrow * (width + 2) + 2)
    for index in range(count):
        r, c = divmod(index, nrow)
        grid[:, 2 + r * (height + 2) : 2 + r * (height + 2) + height, 2 + c * (width + 2) : 2 + c * (width + 2) + width] = images[index]
    plt = _pyplot()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    array = grid.permute(1, 2, 0).numpy()
    if channels == 1:
        plt.imsave(path, array[..., 0], cmap="gray", vmin=0, vmax=1)
    else:
        plt.imsave(path, array)
    return path


def decode_symbols(codes: torch.Tensor) -> list[str]:
    """Rows of 27-symbol codes (``(N, L)`` integers) as strings."""
    return ["".join(_ALPHABET[int(c)] for c in row) for row in codes.detach().cpu()]


def save_text_samples(codes: torch.Tensor, path) -> list[str]:
    """Write decoded text samples, one per line, to ``path``; return them."""
    texts = decode_symbols(codes)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as handle:
        handle.write("\n".join(texts) + "\n")
    return texts


def plot_training_curves(csv_path, png_path, log_scale=("loss", "loss (nats/example)", "grad_norm")) -> str:
    """Plot every numeric column of a training CSV log against ``step`` (one panel each).

    :param csv_path: the CSV log (a ``step`` column and numeric columns).
    :param png_path: where to write the figure.
    :param log_scale: columns drawn on a logarithmic y axis when all their values are
        positive (a BFN loss falls by orders of magnitude in the first hundred updates, which
        hides later progress on a linear axis).
    """
    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise ValueError(f"{csv_path} has no rows")
    columns = [name for name in rows[0] if name != "step"]
    series = {}
    for name in columns:
        points = []
        for row in rows:
            try:
                points.append((float(row["step"]), float(row[name])))
            except (TypeError, ValueError):
                continue
        if points:
            series[name] = points
    plt = _pyplot()
    figure, axes = plt.subplots(len(series), 1, figsize=(7, 2.4 * len(series)), sharex=True, squeeze=False)
    for axis, (name, points) in zip(axes[:, 0], series.items()):
        steps, values = zip(*points)
        axis.plot(steps, values, marker="." if len(points) < 50 else None, linewidth=1)
        if name in log_scale and min(values) > 0:
            axis.set_yscale("log")
        axis.set_ylabel(name)
        axis.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    figure.tight_layout()
    figure.savefig(png_path, dpi=110)
    plt.close(figure)
    return png_path
