"""The child process of ``benchmarks/fault_tolerance.py``: ``pyro-bfn`` with a fault placed at a
chosen point, so that a kill can land exactly there (the library itself is not changed).

::

    PYRO_BFN_FAULT_HOOK='{"point": "checkpoint", "call": 2, "position": "partial", "fraction": 0.3,
                          "marker": "/tmp/paused"}' python benchmarks/fault_injection.py train --config ...

runs :func:`pyro_bfn.cli.main` with the arguments after wrapping the library function of
``point``. At its ``call``-th passage (1-based) the wrapper stops at ``position``: it writes the
file ``marker`` (what was reached, one line) and waits to be killed, or, for a ``position``
starting with ``enospc``, raises :class:`OSError` ``ENOSPC`` (a full disk) there.

=============== =============================================================================
``point``       ``position``
=============== =============================================================================
``checkpoint``  ``partial``: the first ``fraction`` of the temporary file's bytes written;
                ``before_rename``: the temporary file complete; ``after_rename``: the new
                checkpoint in place; ``enospc``: the write fails after ``fraction`` of the bytes
``validation``  ``batches``: before evaluating validation batch ``batch`` (0-based);
                ``before_row``: every batch evaluated, the ``valid_log.csv`` row not written;
                ``after_row``: that row written
``log_row``     ``partial``: the first ``fraction`` of the characters of a ``train_log.csv`` row
                written; ``enospc``: the append fails
=============== =============================================================================

Under ``torchrun`` only rank 0 gets the wrapper (it writes every file).
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import pathlib
import sys
import time

#: the environment variable that carries the fault (JSON), read by this script only
HOOK_VARIABLE = "PYRO_BFN_FAULT_HOOK"


class Fault:
    """The fault of ``spec`` (the JSON of :data:`HOOK_VARIABLE`): counts the passages through
    its point and stops at the chosen one."""

    def __init__(self, spec: dict):
        self.spec, self.calls = spec, 0
        self.replace = os.replace  # the checkpoint fault may replace os.replace

    def reached(self) -> bool:
        """One more passage through the point; whether it is the chosen one."""
        self.calls += 1
        return self.calls == self.spec["call"]

    def stop(self, where: str):
        """Raise ``ENOSPC``, or write the marker and wait to be killed."""
        if self.spec["position"].startswith("enospc"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        marker = pathlib.Path(self.spec["marker"])
        marker.with_suffix(".part").write_text(where)
        self.replace(marker.with_suffix(".part"), marker)
        while True:
            time.sleep(60)


def wrap_checkpoint(fault: Fault) -> None:
    import torch

    import pyro_bfn.training  # noqa: F401 - loads every module that may bind save_checkpoint
    from pyro_bfn.training import checkpoint

    save_checkpoint, torch_save, position = checkpoint.save_checkpoint, torch.save, fault.spec["position"]

    def partial_save(state, handle):  # the first bytes of the file, then stop
        buffer = io.BytesIO()
        torch_save(state, buffer)
        data = buffer.getvalue()
        cut = int(fault.spec["fraction"] * len(data))
        handle.write(data[:cut])
        handle.flush()
        fault.stop(f"{cut} of {len(data)} bytes of the temporary file written")

    def stopped_replace(source, destination):
        fault.stop("temporary file complete, before its rename")

    def wrapped(state, path):
        if not fault.reached():
            return save_checkpoint(state, path)
        if position == "after_rename":
            save_checkpoint(state, path)
            fault.stop("checkpoint renamed into place")
        torch.save, os.replace = (partial_save, os.replace) if position in ("partial", "enospc") else (
            torch.save, stopped_replace)
        try:
            return save_checkpoint(state, path)
        finally:
            torch.save, os.replace = torch_save, fault.replace

    for module in list(sys.modules.values()):  # wherever the library bound it by name
        if getattr(module, "__name__", "").startswith("pyro_bfn") and \
                getattr(module, "save_checkpoint", None) is save_checkpoint:
            module.save_checkpoint = wrapped


def wrap_validation(fault: Fault) -> None:
    from pyro_bfn import evaluation
    from pyro_bfn.training import runlog

    if fault.spec["position"] in ("before_row", "after_row"):
        valid_row = runlog.RunLog.valid_row

        def wrapped_row(self, *args, **kwargs):
            selected = fault.reached()
            if selected and fault.spec["position"] == "before_row":
                fault.stop("every validation batch evaluated, its valid_log.csv row not yet written")
            valid_row(self, *args, **kwargs)
            if selected:
                fault.stop("valid_log.csv row written")

        runlog.RunLog.valid_row = wrapped_row
        return
    prepared_batches = evaluation.prepared_batches

    def wrapped_batches(*args, **kwargs):  # evaluate_bound's batches (one pass: eval_repeats 1)
        selected = fault.reached()
        for index, batch in enumerate(prepared_batches(*args, **kwargs)):
            if selected and index == fault.spec["batch"]:
                fault.stop(f"validation batch {index + 1} about to be evaluated")
            yield batch

    evaluation.prepared_batches = wrapped_batches


def wrap_log_row(fault: Fault) -> None:
    from pyro_bfn.training import runlog

    append = runlog._append_csv

    def wrapped_append(path, fields, row):
        if pathlib.Path(path).name != "train_log.csv" or not fault.reached():
            return append(path, fields, row)
        text = io.StringIO()
        csv.DictWriter(text, fields).writerow(row)
        line = text.getvalue()
        cut = max(1, int(fault.spec["fraction"] * len(line)))
        if fault.spec["position"] == "partial":
            with open(path, "a", newline="") as handle:
                handle.write(line[:cut])
        fault.stop(f"{cut} of {len(line)} characters of the train_log.csv row of step {row['step']} written")

    runlog._append_csv = wrapped_append


WRAPPERS = {"checkpoint": wrap_checkpoint, "validation": wrap_validation, "log_row": wrap_log_row}


def main(argv=None) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as pyro-bfn does, before torch loads
    spec = json.loads(os.environ.get(HOOK_VARIABLE) or "null")
    if spec and os.environ.get("RANK", "0") == "0":
        if spec["point"] not in WRAPPERS:
            raise SystemExit(f"unknown fault point {spec['point']!r}; known: {', '.join(WRAPPERS)}")
        WRAPPERS[spec["point"]](Fault(spec))
    from pyro_bfn.cli import main as pyro_bfn_main

    return pyro_bfn_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    raise SystemExit(main())
