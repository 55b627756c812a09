"""Pictures (:mod:`pyro_bfn.plotting`): PNG files written without pyplot, text samples decoded by
the one codec, and a light import."""

import os
import subprocess
import sys

import pytest
import torch

from pyro_bfn.plotting import decode_symbols, new_figure, plot_training_curves, save_image_grid, save_text_samples

PNG = b"\x89PNG\r\n\x1a\n"


def test_importing_plotting_leaves_the_data_loaders_and_pyplot_alone():
    code = (
        "import sys, pyro_bfn.plotting\n"
        "print(sorted(m for m in ('pyro_bfn.datasets', 'pyro_bfn.datasets.images', 'matplotlib.pyplot') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_saving_does_not_switch_the_global_backend(tmp_path):
    """Grids and curves are drawn on their own Agg canvas: a caller's backend stays, pyplot is
    never imported."""
    code = f"""
import sys, matplotlib, torch
matplotlib.use("svg")
from pyro_bfn.plotting import plot_training_curves, save_image_grid
save_image_grid(torch.rand(4, 3, 5, 5), {str(tmp_path / 'grid.png')!r})
open({str(tmp_path / 'log.csv')!r}, "w").write("step,loss\\n1,3.0\\n2,2.0\\n")
plot_training_curves({str(tmp_path / 'log.csv')!r}, {str(tmp_path / 'curves.png')!r})
print(matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["svg", "False"]
    assert (tmp_path / "grid.png").read_bytes()[:8] == PNG and (tmp_path / "curves.png").read_bytes()[:8] == PNG


@pytest.mark.parametrize("images", [
    torch.randint(0, 2, (5, 1, 4, 4)),  # binary
    torch.randint(0, 256, (3, 3, 4, 6)),  # 0..255, colour
    torch.rand(2, 1, 3, 3) * 2 - 1,  # [-1, 1]
])
def test_image_grid_png(tmp_path, images):
    path = tmp_path / "sub" / "grid.png"
    assert save_image_grid(images, path, nrow=2) == path
    assert path.read_bytes()[:8] == PNG
    from matplotlib.image import imread

    height, width = images.shape[2:]
    grid = imread(path)
    rows = -(-images.shape[0] // 2)
    assert grid.shape[:2] == (rows * (height + 2) + 2, 2 * (width + 2) + 2)


def test_image_grid_errors(tmp_path):
    with pytest.raises(ValueError, match=r"\(N, 1 or 3, H, W\)"):
        save_image_grid(torch.zeros(2, 2, 4, 4), tmp_path / "x.png")
    with pytest.raises(ValueError, match="nrow must be a positive integer"):
        save_image_grid(torch.zeros(2, 1, 4, 4), tmp_path / "x.png", nrow=0)


def test_text_samples(tmp_path):
    codes = torch.tensor([[8, 9, 0, 26], [1, 2, 3, 0]])
    assert decode_symbols(codes) == ["hi z", "abc "]
    path = tmp_path / "t" / "samples.txt"
    assert save_text_samples(codes, path) == ["hi z", "abc "]
    assert path.read_text() == "hi z\nabc \n"
    with pytest.raises(ValueError, match="0..26"):
        decode_symbols(torch.tensor([[27]]))


def test_curves_need_a_numeric_column(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("step,note\n1,start\n")
    with pytest.raises(ValueError, match="no numeric column"):
        plot_training_curves(log, tmp_path / "never.png")
    assert not os.path.exists(tmp_path / "never.png")


def test_new_figure_writes_png(tmp_path):
    figure = new_figure(figsize=(2, 2))
    figure.subplots().plot([0, 1], [1, 0])
    figure.savefig(tmp_path / "f.png")
    assert (tmp_path / "f.png").read_bytes()[:8] == PNG
