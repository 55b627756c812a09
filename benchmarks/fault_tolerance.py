"""Fault-tolerance trials: training killed with SIGKILL at random points and resumed must end
exactly where an uninterrupted run of the same configuration and seed ends; damaged files must
either be recovered from or stop the run with one clear error, and never cost a good checkpoint.

One command prints the tables and writes ``benchmarks/results/fault_tolerance.md`` and ``.json``::

    python benchmarks/fault_tolerance.py                 # 20 + 5 kill trials, 7 file cases (~11 min*)
    python benchmarks/fault_tolerance.py --quick         # 3 kill trials, 2 file cases (a smoke test)

(*) on the shared 2-core machine at a load average of 7-8; each run is a few seconds, most of it
the start-up of Python and torch.

Every run is ``pyro-bfn train`` (one process, or ``torchrun --standalone --nproc-per-node 2``
with gloo) of :data:`RUN`: toy binary rectangles, the small MLP, 120 updates, a checkpoint every
20, validation every 40 (and at the end), a log row every 5.

**Kill trials.** Each starts the run, kills it (the whole process tree, ``torchrun`` and its
workers, with SIGKILL) at a random point, then runs it again with ``--resume`` (without, when no
checkpoint was written yet) to the end, and compares the result with the uninterrupted run's:

* **step**: half of them at a random time while the updates run (the train log has reached a
  random step, then a random 0-10 ms more), observed from outside; the other half inside a random
  row's append to ``train_log.csv``, after a random number of its characters were written;
* **checkpoint**: inside a random checkpoint write (the end-of-run one included), at a random
  place: part of the temporary file written (a random number of bytes), the temporary file
  complete but not yet renamed, or just renamed;
* **validation**: inside a random validation (the final one included): before a random one of
  its batches, after all of them (its row of ``valid_log.csv`` not yet written), or just after
  that row was written.

All but the first need to know where the process is: the run is started as
``benchmarks/fault_injection.py``, which runs :func:`pyro_bfn.cli.main` after wrapping the
library function of that place (the library is not changed); at the chosen place it writes a
marker file and waits, and this script, polling for the marker, kills the process tree. A killed
process can write nothing more, so this is the state a kill at that instant leaves.

**Exact** means: the final checkpoints are equal (every tensor bit for bit: parameters, EMA,
AdamW moments, scheduler, gradient scaler, every rank's generators; step, examples, last
validation; everything else but ``wall_seconds`` and the configuration's ``out_dir``), the rows
of ``train_log.csv`` and ``valid_log.csv`` are equal apart from their timing columns
(``ex_per_s``, ``wall``), and no temporary checkpoint file is left.

**File cases** (one process): a truncated checkpoint, one of random bytes, a checkpoint of
another configuration (another seed), a half-written ``.checkpoint.pt.tmp-PID`` beside a good
checkpoint, a full disk at a checkpoint write (``ENOSPC`` raised by a wrapped write, and a real
one: the run directory on a small tmpfs mounted in a user namespace with ``unshare``, skipped
where that is not possible), and a full disk at a log row (``ENOSPC``). Each passes when the run
either resumes from the last good checkpoint (and then ends exact) or stops with exit status 2 and
one ``pyro-bfn: error:`` line (no traceback), and no good checkpoint is lost: a file it cannot use
is left as it was, and after a failed write the previous checkpoint is there and resumes exactly.
"""

from __future__ import annotations

import csv
import json
import os
import pathlib
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import harness
import psutil

harness.passive_openmp()  # before torch loads

from fault_injection import HOOK_VARIABLE  # noqa: E402 - the child process's script, beside this one

INJECTION = pathlib.Path(__file__).resolve().with_name("fault_injection.py")
MAX_STEPS, CKPT_INTERVAL, EVAL_INTERVAL, EVAL_BATCHES, LOG_INTERVAL = 120, 20, 40, 4, 5
#: the run of every trial (``--set`` items of ``pyro-bfn train``)
RUN = ["dataset=toy_binary", "backbone=mlp_small", "batch_size=64", "lr=3e-3", "warmup_steps=5", "ema_decay=0.9",
       f"max_steps={MAX_STEPS}", f"log_interval={LOG_INTERVAL}", f"eval_interval={EVAL_INTERVAL}", "eval_examples=64",
       f"eval_batch_size={64 // EVAL_BATCHES}", "eval_repeats=1", "sample_interval=0",
       f"ckpt_interval={CKPT_INTERVAL}", "autocast=none", "device=cpu", "seed=3", "progress=false", "num_threads=1"]
CHECKPOINTS = MAX_STEPS // CKPT_INTERVAL  # the periodic writes and the final one
VALIDATIONS = MAX_STEPS // EVAL_INTERVAL  # the periodic ones (not at the last step) and the final one
KINDS = ("step", "checkpoint", "validation")
TIMING_COLUMNS = ("ex_per_s", "wall")
FILE_CASES = ("truncated", "random_bytes", "other_config", "stale_temporary", "enospc_checkpoint",
              "tmpfs_full", "enospc_log_row")
TIMEOUT = 300


# --------------------------------------------------------------------------- runs
def train_command(out_dir, processes: int, resume: bool, extra=()) -> list:
    """The command line of a run of :data:`RUN` (and ``extra`` ``--set`` items) in ``out_dir``
    (through ``fault_injection.py``)."""
    launcher = [sys.executable] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)]
    command = launcher + [str(INJECTION), "train", "--out-dir", str(out_dir)]
    for item in [*RUN, *extra]:
        command += ["--set", item]
    return command + (["--resume"] if resume else [])


def start(out_dir, processes: int = 1, resume: bool = False, hook=None, log_name: str = "run.log", extra=()):
    """Start a run; its output goes to ``out_dir/../NAME``. Returns the :class:`subprocess.Popen`."""
    out_dir = pathlib.Path(out_dir)
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "CI": "true", HOOK_VARIABLE: json.dumps(hook or None)}
    with open(out_dir.parent / log_name, "w") as output:
        return subprocess.Popen(train_command(out_dir, processes, resume, extra), stdout=output, stderr=subprocess.STDOUT,
                                env=environment, start_new_session=True, cwd=harness.ROOT)


def finish_run(out_dir, processes: int = 1, resume: bool = False, hook=None, log_name: str = "run.log", extra=()):
    """Run to the end; returns ``(exit status, output)``."""
    process = start(out_dir, processes, resume, hook, log_name, extra)
    process.wait(timeout=TIMEOUT)
    return process.returncode, (pathlib.Path(out_dir).parent / log_name).read_text()


def kill_tree(process) -> None:
    """SIGKILL to ``process`` and every descendant, workers first (psutil follows the parent
    links: ``torchrun`` starts each worker in a session of its own, so a process group would not
    reach them); waits for ``process``."""
    try:
        parent = psutil.Process(process.pid)
        tree = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    for member in reversed(tree):
        try:
            member.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    process.wait(timeout=60)


def last_logged_step(out_dir) -> int:
    try:
        lines = (pathlib.Path(out_dir) / "train_log.csv").read_text().splitlines()
        return int(lines[-1].split(",")[0]) if len(lines) > 1 else 0
    except (OSError, ValueError, IndexError):
        return 0


def saved_step(out_dir):
    """The step of ``out_dir/checkpoint.pt``, ``None`` if there is none (or it does not load)."""
    import torch

    try:
        return int(torch.load(pathlib.Path(out_dir) / "checkpoint.pt", weights_only=True)["step"])
    except Exception:  # noqa: BLE001 - any unreadable file counts as none
        return None


# --------------------------------------------------------------------------- comparison
def differences(a, b, path: str = "") -> list:
    """Where two checkpoints (nested dicts, lists, tensors, numbers) differ: ``wall_seconds`` and
    ``config.out_dir`` apart; tensors bit for bit (dtype and shape included)."""
    import torch

    if path in ("wall_seconds", "config.out_dir"):
        return []
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{path or 'checkpoint'}: keys {sorted(map(str, a.keys() ^ b.keys()))}"]
        return [d for key in a for d in differences(a[key], b[key], f"{path}.{key}" if path else str(key))]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} vs {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        same = a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
        return [] if same else [path]
    return [] if a == b or (a != a and b != b) else [f"{path}: {a!r} vs {b!r}"]


def log_rows(out_dir, name: str) -> list:
    path = pathlib.Path(out_dir) / f"{name}_log.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in csv.DictReader(handle)]


def compare_runs(out_dir, reference) -> list:
    """What differs between the run in ``out_dir`` and the ``reference`` run ([] = exact)."""
    import torch

    found = []
    try:
        found += differences(torch.load(pathlib.Path(out_dir) / "checkpoint.pt", weights_only=True),
                             torch.load(pathlib.Path(reference) / "checkpoint.pt", weights_only=True))
    except (OSError, RuntimeError) as error:
        found.append(f"checkpoint unreadable: {error}")
    for name in ("train", "valid"):
        rows, expected = log_rows(out_dir, name), log_rows(reference, name)
        if rows != expected:
            extra = [r for r in rows if r not in expected][:2]
            found.append(f"{name}_log.csv: {len(rows)} rows vs {len(expected)}" + (f", e.g. {extra}" if extra else ""))
    found += [f"left behind: {p.name}" for p in pathlib.Path(out_dir).glob(".checkpoint.pt.tmp-*")]
    return found


def checkpoint_exact(trial: dict) -> bool:
    """Whether a trial's final checkpoint (and temporary files) matched: all its differences are log rows."""
    return all(d.startswith(("train_log.csv", "valid_log.csv")) for d in trial["differences"])


# --------------------------------------------------------------------------- kill trials
def draw_kill(kind: str, rng: random.Random) -> dict:
    """A random place of the ``kind`` of trial: the hook spec (``None`` for ``step``) and a label."""
    if kind == "step" and rng.random() < 0.5:
        return dict(hook=None, step=rng.randrange(1, MAX_STEPS - 5), delay=rng.uniform(0, 0.01))
    if kind == "step":  # inside the append of a row to train_log.csv (its first characters written)
        return dict(hook=dict(point="log_row", call=rng.randrange(2, MAX_STEPS // LOG_INTERVAL + 1), position="partial",
                              fraction=rng.random()))
    if kind == "checkpoint":
        position = rng.choice(["partial", "before_rename", "after_rename"])
        return dict(hook=dict(point="checkpoint", call=rng.randrange(1, CHECKPOINTS + 1), position=position,
                              fraction=rng.uniform(0.01, 0.99)))
    batch = rng.randrange(EVAL_BATCHES + 2)  # before batch 1..4, before the row (all evaluated), after it
    position = {EVAL_BATCHES: "before_row", EVAL_BATCHES + 1: "after_row"}.get(batch, "batches")
    return dict(hook=dict(point="validation", call=rng.randrange(1, VALIDATIONS + 1), position=position, batch=batch))


def kill_trial(directory, kind: str, processes: int, reference, rng: random.Random) -> dict:
    """Start a run, kill it at a random place of ``kind``, resume it to the end, compare."""
    out_dir = pathlib.Path(directory) / "run"
    out_dir.mkdir(parents=True)
    plan = draw_kill(kind, rng)
    marker = pathlib.Path(directory) / "paused"
    hook = None if plan["hook"] is None else {**plan["hook"], "marker": str(marker)}
    process = start(out_dir, processes, hook=hook, log_name="killed.log")
    deadline = time.monotonic() + TIMEOUT
    where = None
    while process.poll() is None and time.monotonic() < deadline:
        if hook is None and last_logged_step(out_dir) >= plan["step"]:
            time.sleep(plan["delay"])
            where = f"after the log row of step {last_logged_step(out_dir)} + {plan['delay'] * 1e3:.1f} ms"
            break
        if hook is not None and marker.is_file():
            where = f"{hook['point']} {hook['call']}: {marker.read_text()}"
            break
        time.sleep(0.002)
    killed = process.poll() is None
    kill_tree(process)
    checkpoint_step = saved_step(out_dir)
    temporaries = len(list(out_dir.glob(".checkpoint.pt.tmp-*")))
    status, output = finish_run(out_dir, processes, resume=checkpoint_step is not None, log_name="resumed.log")
    found = compare_runs(out_dir, reference) if status == 0 else [f"resume exited {status}: {output[-500:]}"]
    if not killed:
        found.append("the run ended before it could be killed")
    return dict(processes=processes, kind=kind, where=where or "not reached", checkpoint_step=checkpoint_step,
                temporary_files=temporaries, exact=not found, differences=found)


# --------------------------------------------------------------------------- file cases
def make_good_run(out_dir) -> None:
    """A run of :data:`RUN` in ``out_dir`` killed just after its checkpoint of step 40 was written."""
    marker = pathlib.Path(out_dir).parent / "paused"
    process = start(out_dir, hook=dict(point="checkpoint", call=2, position="after_rename", marker=str(marker)),
                    log_name="good.log")
    deadline = time.monotonic() + TIMEOUT
    while not marker.is_file():
        if process.poll() is not None or time.monotonic() > deadline:
            kill_tree(process)
            raise RuntimeError("the run for the damaged-file cases did not reach its second checkpoint:\n"
                               + (pathlib.Path(out_dir).parent / "good.log").read_text()[-3000:])
        time.sleep(0.01)
    kill_tree(process)


def file_case(directory, case: str, good_run, reference, rng: random.Random) -> dict:
    """One damaged-file case; ``good_run`` is a run of :data:`RUN` killed just after its
    checkpoint of step 40 was written (:func:`make_good_run`)."""
    directory = pathlib.Path(directory)
    out_dir = directory / "run"
    if case == "tmpfs_full":
        return tmpfs_case(directory, (good_run / "checkpoint.pt").stat().st_size, reference)
    shutil.copytree(good_run, out_dir)
    checkpoint = out_dir / "checkpoint.pt"
    data = checkpoint.read_bytes()
    if case == "truncated":
        checkpoint.write_bytes(data[: len(data) // 2])
    elif case == "random_bytes":
        checkpoint.write_bytes(rng.randbytes(len(data)))
    elif case == "other_config":
        other = directory / "other" / "run"
        other.parent.mkdir()
        status, output = finish_run(other, log_name="other.log", extra=["seed=4", f"max_steps={CKPT_INTERVAL}"])
        if status != 0:
            raise RuntimeError(f"the run of another seed failed:\n{output[-3000:]}")
        shutil.copyfile(other / "checkpoint.pt", checkpoint)
    elif case == "stale_temporary":
        (out_dir / ".checkpoint.pt.tmp-999999").write_bytes(data[: len(data) // 2])
        status, output = finish_run(out_dir, resume=True, log_name="case.log")
        return judge(case, "resume from step 40", status, output, out_dir, reference, resumed_from=2 * CKPT_INTERVAL)
    elif case in ("enospc_checkpoint", "enospc_log_row"):  # a fresh run whose second write of the kind fails
        shutil.rmtree(out_dir)
        out_dir.mkdir()
        point = "checkpoint" if case == "enospc_checkpoint" else "log_row"
        hook = dict(point=point, call=2, position="enospc", fraction=0.5, marker=str(directory / "unused"))
        status, output = finish_run(out_dir, hook=hook, log_name="case.log")
        kept = CKPT_INTERVAL if point == "checkpoint" else None
        return judge(case, f"error, then resume from step {kept or 0}", status, output, out_dir, reference, kept_step=kept)
    else:
        raise ValueError(case)
    damaged = checkpoint.read_bytes()
    status, output = finish_run(out_dir, resume=True, log_name="case.log")
    result = judge(case, "error", status, output, out_dir, reference)
    if checkpoint.read_bytes() != damaged:
        result.update(passed=False, problems=result["problems"] + ["the run changed the checkpoint it could not use"])
    return result


def tmpfs_case(directory, checkpoint_size: int, reference) -> dict:
    """The run directory on a tmpfs with room for one checkpoint and half of a second one (so
    the second write runs out of space), in a user and mount namespace of its own (``unshare``);
    the directory is copied out before the namespace ends, then resumed on the ordinary disk."""
    expected = f"error, then resume from step {CKPT_INTERVAL}"
    if shutil.which("unshare") is None:
        return dict(case="tmpfs_full", expected=expected, outcome="skipped: no unshare", passed=None, problems=[])
    size_kib = int(1.5 * checkpoint_size) // 1024 + 256
    out_dir, copy = directory / "run_tmpfs", directory / "run"
    out_dir.mkdir(parents=True)
    command = " ".join(shlex.quote(str(part)) for part in train_command(out_dir, 1, False))
    script = (f"mount -t tmpfs -o size={size_kib}k tmpfs {out_dir} || exit 97; {command} > {directory}/case.log 2>&1; "
              f"status=$?; cp -a {out_dir} {copy}; exit $status")
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "CI": "true", HOOK_VARIABLE: "null"}
    status = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script], env=environment,
                            timeout=TIMEOUT, cwd=harness.ROOT, capture_output=True).returncode
    if not copy.is_dir():
        return dict(case="tmpfs_full", expected=expected, outcome=f"skipped: no tmpfs in a user namespace (exit {status})",
                    passed=None, problems=[])
    output = (directory / "case.log").read_text()
    result = judge("tmpfs_full", expected, status, output, copy, reference, kept_step=CKPT_INTERVAL)
    result["outcome"] = f"{size_kib} KiB tmpfs: " + result["outcome"]
    return result


def judge(case, expected, status, output, out_dir, reference, kept_step=None, resumed_from=None) -> dict:
    """Whether the outcome of a damaged-file case is right. With ``resumed_from``, the run must
    have resumed from that step and ended exact. Otherwise it must have stopped with one clear
    error (exit 2, one ``pyro-bfn: error:`` line, no traceback); with ``kept_step`` (``0``: none
    was written yet), the checkpoint left must be that step's, and resuming from it (a fresh start
    for none) must end exact."""
    problems = []
    if resumed_from is not None:
        started = [line for line in output.splitlines() if line.startswith("training ") and "; from step " in line]
        step = int(started[0].split("; from step ")[1].split(";")[0]) if started else None
        problems += [] if step == resumed_from else [f"resumed from step {step}"]
        problems += compare_runs(out_dir, reference) if status == 0 else [f"exit {status}: {output[-300:]}"]
        outcome = f"exit {status}, resumed from step {step}, stale file removed" + ("" if problems else ", exact")
        return dict(case=case, expected=expected, outcome=outcome, passed=not problems, problems=problems)
    errors = [line for line in output.splitlines() if line.startswith("pyro-bfn: error:")]
    if not (status == 2 and len(errors) == 1 and "Traceback" not in output):
        problems.append("not one clear error")
    message = errors[0][len("pyro-bfn: error: "):] if errors else output.strip().splitlines()[-1]
    outcome = f"exit {status}: {message}".replace(str(out_dir.parent) + os.sep, "")[:220]
    if kept_step is not None or case.startswith("enospc") or case == "tmpfs_full":
        step = saved_step(out_dir)
        problems += [] if step == kept_step else [f"checkpoint left: step {step}, expected {kept_step}"]
        status, later = finish_run(out_dir, resume=step is not None, log_name="case_resumed.log")
        found = compare_runs(out_dir, reference) if status == 0 else [f"resume exit {status}: {later[-300:]}"]
        outcome += f"; then {'resumed from step ' + str(step) if step is not None else 'started afresh'}" \
                   + ("" if found else ", exact")
        problems += found
    return dict(case=case, expected=expected, outcome=outcome, passed=not problems, problems=problems)


# --------------------------------------------------------------------------- the study
def markdown(meta, trials, cases) -> str:
    lines = harness.header_lines(meta, "Fault tolerance: killed and resumed runs, damaged files") + [""]
    lines += [f"Run: `pyro-bfn train` of {' '.join(RUN)} (one process, or `torchrun --standalone "
              "--nproc-per-node 2`, gloo); killed with SIGKILL (the whole process tree), resumed with `--resume`.", ""]
    lines += ["## Summary", ""]
    summary = []
    for processes in sorted({t["processes"] for t in trials}):
        for kind in (*KINDS, None):
            group = [t for t in trials if t["processes"] == processes and kind in (None, t["kind"])]
            if group:
                counts = [f"{sum(t['exact'] for t in group)}/{len(group)}",
                          f"{sum(checkpoint_exact(t) for t in group)}/{len(group)}"]
                summary.append([processes, kind or "**all**", *(counts if kind else [f"**{c}**" for c in counts])])
    lines += [harness.markdown_table(["processes", "killed during", "exact / trials", "checkpoint exact / trials"],
                                     summary, numeric_from=2), ""]
    inexact = [t for t in trials if not t["exact"]]
    if inexact:
        logs_only = [t for t in inexact if checkpoint_exact(t)]
        lines += [f"Of the {len(inexact)} trials that are not exact, {len(logs_only)} differ only in the rows of "
                  "`train_log.csv` / `valid_log.csv` (their final checkpoints are exact); reproductions of each "
                  "cause are in `tests/training/test_fault_recovery.py`.", ""]
    lines += ["## Kill trials", ""]
    rows = [[i + 1, t["processes"], t["kind"], t["where"], "none" if t["checkpoint_step"] is None else t["checkpoint_step"],
             t["temporary_files"], "yes" if t["exact"] else "**no**: " + "; ".join(t["differences"])[:200]]
            for i, t in enumerate(trials)]
    lines += [harness.markdown_table(["trial", "processes", "killed during", "where", "checkpoint step at kill",
                                      "tmp files left", "exact"], rows, numeric_from=99), ""]
    if cases:
        lines += ["## Damaged files (one process)", ""]
        rows = [[c["case"], c["expected"], c["outcome"].replace("|", "/"),
                 {True: "yes", False: "**no**: " + "; ".join(c["problems"])[:200], None: "skipped"}[c["passed"]]]
                for c in cases]
        lines += [harness.markdown_table(["case", "expected", "outcome", "pass"], rows,
                                         numeric_from=99), ""]
    return "\n".join(lines)


def main(argv=None):
    parser = harness.parser(__doc__, threads=None, device=None)
    parser.add_argument("--trials", type=harness.non_negative_int, default=20, help="kill trials, one process (20)")
    parser.add_argument("--ddp-trials", type=harness.non_negative_int, default=5,
                        help="kill trials under torchrun with 2 gloo processes (5)")
    parser.add_argument("--cases", nargs="*", default=list(FILE_CASES), choices=FILE_CASES, help="damaged-file cases")
    parser.add_argument("--quick", action="store_true", help="3 kill trials and 2 file cases (a smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.ddp_trials, args.cases = 3, 0, ["truncated", "stale_temporary"]
    meta = harness.provenance(__file__, argv, seed=args.seed)
    rng = random.Random(args.seed)
    trials, cases = [], []
    with tempfile.TemporaryDirectory(prefix="fault_tolerance_") as work:
        work = pathlib.Path(work)
        references = {}
        for processes in [1] + ([2] if args.ddp_trials else []):
            reference = work / f"reference_{processes}" / "run"
            reference.parent.mkdir()
            status, output = finish_run(reference, processes)
            if status != 0:
                raise SystemExit(f"the uninterrupted run failed:\n{output[-3000:]}")
            references[processes] = reference
        plan = [(1, KINDS[i % 3]) for i in range(args.trials)] + [(2, KINDS[i % 3]) for i in range(args.ddp_trials)]
        for index, (processes, kind) in enumerate(plan):
            trial = kill_trial(work / f"trial_{index}", kind, processes, references[processes], rng)
            trials.append(trial)
            print(f"trial {index + 1}/{len(plan)}: {processes} process(es), {kind}: {trial['where']}; "
                  f"{'exact' if trial['exact'] else 'NOT EXACT: ' + '; '.join(trial['differences'])}", file=sys.stderr)
        if args.cases:
            good_run = work / "good" / "run"
            good_run.parent.mkdir()
            make_good_run(good_run)
            for case in args.cases:
                result = file_case(work / f"case_{case}", case, good_run, references[1], rng)
                cases.append(result)
                print(f"case {case}: {result['outcome']}; {'pass' if result['passed'] else result}", file=sys.stderr)
    harness.finish(meta)
    text = markdown(meta, trials, cases)
    harness.write_results(args.out, "fault_tolerance", text, meta, run=RUN, trials=trials, cases=cases)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
