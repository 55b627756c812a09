"""What a run writes besides its checkpoint: the CSV logs, the curves, the samples, the summary,
and the progress shown while it trains.

=================== ===========================================================
``config.yaml``     the resolved configuration
``train_log.csv``   :data:`TRAIN_LOG_FIELDS`, one row per ``log_interval`` steps
``valid_log.csv``   :data:`VALID_LOG_FIELDS`, one row per validation (EMA weights)
``curves.csv/.png`` loss, validation bound, gradient norm, learning rate, examples/s
``samples_*.png``   sample grids (``.txt`` for text), see :func:`save_samples`
``summary.json``    what :meth:`~pyro_bfn.training.Trainer.train` returns
``tensorboard/``    with ``logger: tensorboard``: the logs' scalars as TensorBoard events
=================== ===========================================================

Status lines are :mod:`logging` records; :class:`TqdmHandler` writes them with
:func:`tqdm.tqdm.write`, so that they appear above a progress bar rather than glued onto it.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import sys
from pathlib import Path

import torch
import yaml

__all__ = ["Progress", "RunLog", "TRAIN_LOG_FIELDS", "TqdmHandler", "VALID_LOG_FIELDS", "log_to_stderr", "save_samples"]

TRAIN_LOG_FIELDS = ["step", "examples", "loss", "lr", "grad_norm", "ex_per_s", "wall", "skipped"]
VALID_LOG_FIELDS = ["step", "examples", "valid_nats", "valid_stderr", "wall"]
_CURVE_FIELDS = ["step", "loss (nats/example)", "valid bound (nats/example)", "grad_norm", "lr", "ex_per_s"]


class RunLog:
    """The files of a run's output directory other than the checkpoint.

    :param out_dir: the run's directory (created by :meth:`start`).
    :param bool tensorboard: also write each row's numbers as TensorBoard scalars (tags
        ``train/<field>``, ``valid/<field>``, at the row's step) into ``out_dir/tensorboard``.
    :raises ConfigError: ``tensorboard`` without the ``tensorboard`` package installed.
    """

    def __init__(self, out_dir, tensorboard: bool = False):
        self.out_dir = Path(out_dir)
        self._writer = self._writer_class = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                from .config import ConfigError

                raise ConfigError("logger: tensorboard needs the tensorboard package: "
                                  "pip install pyro-bfn[tensorboard]") from None
            self._writer_class = SummaryWriter

    def rows(self, name: str = "train") -> list:
        """The rows (dicts of strings) of ``train_log.csv`` or ``valid_log.csv``
        (``name`` = ``"train"`` or ``"valid"``); ``[]`` when the file does not exist."""
        if name not in ("train", "valid"):
            raise ValueError(f"name must be 'train' or 'valid', got {name!r}")
        return _read_csv(self.out_dir / f"{name}_log.csv")

    def start(self, config: dict, step: int, valid_step: int | None = None) -> None:
        """Create the directory, write ``config.yaml`` and drop the log rows past ``step``
        (written after the checkpoint a run resumes from), so that a resumed run's logs read
        like an uninterrupted one's; ``step = 0`` removes the logs.

        :param int step: the step of the checkpoint the run resumes from.
        :param int valid_step: the step of the last validation that checkpoint holds
            (default ``step``): ``valid_log.csv`` rows past it are dropped too, since the
            resumed run validates again where a validation ran after the checkpoint (the final
            one of a run). A row cut short by a kill (a field missing) is always dropped."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self._writer_class is not None and self._writer is None:
            # purge_step: a resumed run's events past its checkpoint are dropped like its CSV rows
            self._writer = self._writer_class(str(self.out_dir / "tensorboard"), purge_step=step + 1 if step else None)
        with open(self.out_dir / "config.yaml", "w") as handle:
            yaml.safe_dump(config, handle, sort_keys=False)
        for name, fields in (("train_log.csv", TRAIN_LOG_FIELDS), ("valid_log.csv", VALID_LOG_FIELDS)):
            path = self.out_dir / name
            if not path.is_file():
                continue
            if step == 0:
                path.unlink()
                continue
            last = step if name == "train_log.csv" or valid_step is None else min(step, valid_step)
            rows = [row for row in _read_csv(path) if _complete(row) and int(row["step"]) <= last]
            with open(path, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fields, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(rows)

    def train_row(self, step: int, examples: int, loss: float, lr: float, grad_norm: float, rate: float,
                  wall: float, skipped: int = 0) -> None:
        """Append a row to ``train_log.csv``: mean loss (nats/example) and gradient norm of the
        steps since the last row, learning rate, examples/s, wall seconds, and how many of
        those updates the gradient scaler skipped (non-finite gradients)."""
        _append_csv(self.out_dir / "train_log.csv", TRAIN_LOG_FIELDS, {
            "step": step, "examples": examples, "loss": f"{loss:.4f}", "lr": f"{lr:.3e}",
            "grad_norm": f"{grad_norm:.4f}", "ex_per_s": f"{rate:.1f}", "wall": f"{wall:.1f}",
            "skipped": skipped,
        })
        self._scalars("train", step, loss=loss, lr=lr, grad_norm=grad_norm, ex_per_s=rate)

    def valid_row(self, step: int, examples: int, nats: float, stderr: float, wall: float) -> None:
        """Append a row to ``valid_log.csv``: the validation bound and its standard error."""
        _append_csv(self.out_dir / "valid_log.csv", VALID_LOG_FIELDS, {
            "step": step, "examples": examples, "valid_nats": f"{nats:.4f}", "valid_stderr": f"{stderr:.4f}",
            "wall": f"{wall:.1f}",
        })
        self._scalars("valid", step, nats=nats, stderr=stderr)

    def _scalars(self, group: str, step: int, **values: float) -> None:
        if self._writer is not None:
            for name, value in values.items():
                self._writer.add_scalar(f"{group}/{name}", value, step)

    def close(self) -> None:
        """Flush and close the TensorBoard writer, if any (the CSV files are closed after
        each row)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def write_curves(self) -> Path | None:
        """``curves.csv`` (the train log's columns and the validation bound per logged step)
        and its plot ``curves.png``; ``None`` when nothing was logged."""
        from ..plotting import plot_training_curves

        rows = _read_csv(self.out_dir / "train_log.csv")
        if not rows:
            return None
        valid = {int(row["step"]): row["valid_nats"] for row in _read_csv(self.out_dir / "valid_log.csv")}
        curve_rows = []
        for row in rows:
            step = int(row["step"])
            curve_rows.append({"step": step, "loss (nats/example)": row["loss"],
                               "valid bound (nats/example)": valid.pop(step, ""),
                               "grad_norm": row["grad_norm"], "lr": row["lr"], "ex_per_s": row["ex_per_s"]})
        for step, value in valid.items():  # validation at steps without a log row
            curve_rows.append({"step": step, "valid bound (nats/example)": value})
        curve_rows.sort(key=lambda r: r["step"])
        csv_path = self.out_dir / "curves.csv"
        with open(csv_path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, _CURVE_FIELDS, restval="")
            writer.writeheader()
            writer.writerows(curve_rows)
        return Path(plot_training_curves(csv_path, self.out_dir / "curves.png"))

    def write_summary(self, summary: dict) -> Path:
        """Write ``summary.json``."""
        path = self.out_dir / "summary.json"
        with open(path, "w") as handle:
            json.dump(summary, handle, indent=2)
        return path


def save_samples(spec, samples: torch.Tensor, stem) -> Path:
    """Write samples as an image grid (``stem.png``), text lines (``stem.txt``) or, for
    examples of any other shape, a tensor (``stem.pt``).

    :param spec: the :class:`~pyro_bfn.zoo.DatasetSpec` (its ``modality`` decides).
    :param samples: shape ``(N, *data_shape)``.
    :param stem: path without suffix (a suffix, if given, is replaced).
    """
    from ..plotting import save_image_grid, save_text_samples

    stem = Path(stem)
    if spec.modality == "text":
        path = stem.with_suffix(".txt")
        save_text_samples(samples.reshape(samples.shape[0], -1), path)
    elif spec.modality == "array":
        path = stem.with_suffix(".pt")
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(samples.detach().cpu(), path)
    else:
        path = stem.with_suffix(".png")
        save_image_grid(samples, path, scale=4, padding_value=0.15)
    return path


class TqdmHandler(logging.Handler):
    """A :class:`logging.Handler` that writes each record as a line with
    :func:`tqdm.tqdm.write` (to stderr), which clears and redraws an active progress bar
    around it."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm.auto import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging's contract: report, never raise
            self.handleError(record)


def log_to_stderr(level: int = logging.INFO) -> None:
    """Show the records of the ``pyro_bfn`` loggers at ``level`` and above on stderr through a
    :class:`TqdmHandler` (added once, however often this is called). The library itself adds
    no handler; ``pyro-bfn`` and scripts call this, as they would :func:`logging.basicConfig`.

    :param int level: a :mod:`logging` level.
    """
    package = logging.getLogger("pyro_bfn")
    if not any(isinstance(handler, TqdmHandler) for handler in package.handlers):
        handler = TqdmHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        package.addHandler(handler)
    package.setLevel(level)


class Progress:
    """Progress of the updates: a tqdm bar when ``requested`` and stderr is a terminal (and
    ``CI`` is not ``true``), else a status line through ``log`` at most every
    :attr:`STATUS_SECONDS` seconds of ``clock``, at the log rows.

    :param int total: the last update (``max_steps``).
    :param int initial: the update the session starts from.
    :param bool requested: the configuration's ``progress``.
    :param log: callable taking one line of text.
    :param clock: callable returning seconds.
    """

    STATUS_SECONDS = 30

    def __init__(self, total: int, initial: int, requested: bool, log, clock):
        from tqdm.auto import tqdm

        enabled = requested and os.environ.get("CI", "").lower() != "true" and bool(
            getattr(sys.stderr, "isatty", lambda: False)())
        self.bar = tqdm(total=total, initial=initial, disable=not enabled, desc="train", dynamic_ncols=True,
                        smoothing=0.1)
        self._log = log
        self._last_status = clock()

    def update(self) -> None:
        """One update done."""
        self.bar.update(1)

    def row(self, step: int, loss: float, rate: float, wall_seconds: float, now: float) -> None:
        """A log row: the mean loss and examples/s of the steps since the last one."""
        self.bar.set_postfix(loss=f"{loss:.2f}", ex_s=f"{rate:.0f}")
        if self.bar.disable and now - self._last_status >= self.STATUS_SECONDS:
            self._log(f"step {step}: loss {loss:.2f} nats/example, {rate:.0f} ex/s, {wall_seconds / 60:.1f} min")
            self._last_status = now

    def close(self) -> None:
        self.bar.close()


def _int_or_none(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _complete(row: dict) -> bool:
    """Whether a ``csv.DictReader`` row holds every field of its header and no more, with an
    integer step: a row whose append a kill cut short (``"1"`` of ``"105,6720,..."``) does not."""
    return None not in row and None not in row.values() and _int_or_none(row.get("step")) is not None


def _read_csv(path) -> list:
    if not Path(path).is_file():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _append_csv(path, fields, row) -> None:
    path = Path(path)
    new = not path.is_file() or path.stat().st_size == 0
    with open(path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fields)
        if new:
            writer.writeheader()
        writer.writerow(row)
