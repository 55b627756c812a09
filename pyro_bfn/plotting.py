"""Pictures of what a run produces: sample grids, text samples, training curves.

Figures are drawn with matplotlib's object API (:class:`matplotlib.figure.Figure` on an Agg
canvas, :func:`matplotlib.image.imsave`): nothing here imports ``matplotlib.pyplot`` or
changes matplotlib's global backend, so a caller's own plotting is left as it was. Text
samples are decoded with :mod:`pyro_bfn.text_codec`.
"""

from __future__ import annotations

import csv
import math
import os

import torch

from .checks import check_integer
from .text_codec import decode_rows

__all__ = ["decode_symbols", "new_figure", "plot_training_curves", "save_image_grid", "save_text_samples"]


def new_figure(**options):
    """A matplotlib figure drawn on its own Agg (PNG) canvas, outside pyplot's global state.

    Draw with ``figure.subplots(...)`` and write with ``figure.savefig(path)``; nothing needs
    closing afterwards.

    :param options: keyword arguments of :class:`matplotlib.figure.Figure` (``figsize``, ...).
    :returns: the :class:`matplotlib.figure.Figure`.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(**options)
    FigureCanvasAgg(figure)
    return figure


def _to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """Integers 0/1 (binary), 0..255, or floats in [-1, 1] / [0, 1] -> floats in [0, 1]."""
    images = images.detach().cpu()
    if not images.is_floating_point():
        top = 1.0 if images.max() <= 1 else 255.0
        return images.float() / top
    if images.min() < 0:
        return ((images + 1) / 2).clamp(0, 1)
    return images.clamp(0, 1)


def save_image_grid(images: torch.Tensor, path, nrow: int | None = None, scale: int = 1, padding_value: float = 1.0) -> str:
    """Write images as one PNG grid, two-pixel gaps between them (before scaling).

    :param torch.Tensor images: shape ``(N, C, H, W)``, C = 1 (grey) or 3 (RGB); integers 0/1
        or 0..255, or floats in [0, 1] or [-1, 1].
    :param path: the PNG file to write (its directory is created).
    :param int nrow: images per row; about ``sqrt(N)`` when ``None``.
    :param int scale: every pixel becomes a ``scale x scale`` block (nearest neighbour), so that
        small images are big enough to see.
    :param float padding_value: the grey level of the gaps, in [0, 1] (1: white, 0.15: dark).
    :returns: ``path``.
    """
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must have shape (N, 1 or 3, H, W), got {tuple(images.shape)}")
    check_integer("nrow", nrow, allow_none=True)
    check_integer("scale", scale)
    if not 0.0 <= float(padding_value) <= 1.0:
        raise ValueError(f"padding_value must lie in [0, 1], got {padding_value!r}")
    images = _to_unit_range(images)
    count, channels, height, width = images.shape
    nrow = nrow or math.ceil(math.sqrt(count))
    ncol = math.ceil(count / nrow)
    grid = torch.full((channels, ncol * (height + 2) + 2, nrow * (width + 2) + 2), float(padding_value))
    for index in range(count):
        r, c = divmod(index, nrow)
        grid[:, 2 + r * (height + 2) : 2 + r * (height + 2) + height, 2 + c * (width + 2) : 2 + c * (width + 2) + width] = images[index]
    if scale > 1:
        grid = grid.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)
    from matplotlib.image import imsave

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    array = grid.permute(1, 2, 0).numpy()
    if channels == 1:
        imsave(path, array[..., 0], cmap="gray", vmin=0, vmax=1)
    else:
        imsave(path, array)
    return path


def decode_symbols(codes: torch.Tensor) -> list[str]:
    """Rows of 27-symbol codes as strings (:func:`pyro_bfn.text_codec.decode_rows`).

    :param torch.Tensor codes: integers in 0..26 of shape ``(N, L)``, on any device.
    :returns: ``N`` strings of length ``L``.
    """
    return decode_rows(codes.detach().cpu().numpy())


def save_text_samples(codes: torch.Tensor, path) -> list[str]:
    """Write decoded text samples, one per line, to ``path``; return them.

    :param torch.Tensor codes: integers in 0..26 of shape ``(N, L)``.
    """
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
    if not series:
        raise ValueError(f"{csv_path} has no numeric column besides step")
    figure = new_figure(figsize=(7, 2.4 * len(series)))
    axes = figure.subplots(len(series), 1, sharex=True, squeeze=False)
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
    return png_path
