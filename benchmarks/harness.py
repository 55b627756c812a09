"""What every benchmark script shares: where a result came from, how it is timed, how it is
written, and the start of its command line.

The scripts run as ``python benchmarks/NAME.py``, so this directory is ``sys.path[0]`` and each
imports this module as ``import harness``; besides it, only ``mnist_classifier.py`` (the
independent scorer of the two sample-quality studies) and ``fault_injection.py`` (the child
process of ``fault_tolerance.py``) are imported by scripts; a helper that a test needs too lives
in the library. Nothing here imports torch, or pyro_bfn
(which loads it), at module level, so that :func:`passive_openmp` can still act before torch
loads.

* **Provenance** (:func:`provenance`, :func:`finish`): the command, date, seed, library
  versions, torch threads, CPU model and its vector features, core count, git revision, load
  average at the start and the end, wall time; recorded in every result's JSON and printed by
  :func:`header_lines` above every table.
* **Command line** (:func:`parser`): ``--out``, ``--seed``, ``--threads`` and ``--device`` with
  the defaults a script passes; :func:`integer_at_least` (and :data:`positive_int`,
  :data:`non_negative_int`) as argparse types built on :func:`pyro_bfn.checks.check_integer`;
  ``--configs`` / ``--quick`` (:func:`add_configs`, :func:`selected_configs`);
  :func:`passive_openmp` before torch loads.
* **Timing** (:func:`timer`, :func:`alternate`, :func:`throughput`): wall-clock seconds of a
  call (synchronising CUDA), several calls timed in alternation so that load from other
  processes hits them alike, and median / best throughput of the repeats; and
  :func:`seeded_batches`, the batches of a test split with the draws of the likelihood bound.
* **Results** (:func:`header_lines`, :func:`markdown_table`, :func:`save_figure`,
  :func:`write_results`, :func:`load_saved`, :func:`read_run_log`): the title and provenance
  lines, the Markdown table, a plot, ``NAME.md`` + ``NAME.json`` (with the plot paths) under
  ``--out``, a saved result for ``--render``, and the CSV logs of a
  :class:`pyro_bfn.training.Trainer` run.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import shlex
import statistics
import subprocess
import sys
import time
from importlib import metadata

#: where the committed results live (the default of ``--out``)
RESULTS = pathlib.Path(__file__).resolve().parent / "results"
#: the repository root
ROOT = RESULTS.parent.parent

#: The CPU features that decide which kernels torch can use for the backbone: bf16 autocast is
#: fast only with AVX512-BF16 or AMX (on an AVX2-only CPU it falls back to generic
#: convolutions), so a speed table means little without them.
CPU_FEATURES = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")

#: the distributions whose versions a result records (distribution name -> label)
PACKAGES = {"torch": "torch", "pyro-ppl": "pyro", "numpy": "numpy", "scipy": "scipy"}


# --------------------------------------------------------------------------- provenance
def _cpuinfo_field(prefix: str) -> str | None:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    """The ``model name`` of ``/proc/cpuinfo``, else :func:`platform.processor`, else ``"unknown"``."""
    return _cpuinfo_field("model name") or platform.processor() or "unknown"


def cpu_features() -> str:
    """The flags of :data:`CPU_FEATURES` that ``/proc/cpuinfo`` lists, e.g. ``"avx2 avx512f"``,
    ``"none of ..."`` when it lists none of them, ``"unknown"`` without ``/proc/cpuinfo``."""
    flags = _cpuinfo_field("flags")
    if flags is None:
        return "unknown"
    present = set(flags.split())
    return " ".join(f for f in CPU_FEATURES if f in present) or "none of " + ", ".join(CPU_FEATURES)


def git_revision() -> str:
    """The short HEAD commit, with ``" (working tree modified)"`` when tracked files differ."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return (head or "unknown") + (" (working tree modified)" if dirty else "")
    except OSError:
        return "unknown"


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages, e.g. ``"0.52, 0.61, 0.70"``."""
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def utc_now() -> str:
    """The current time, e.g. ``"2026-12-01 21:47:58 UTC"``."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())


def versions() -> dict:
    """``{"torch": ..., "pyro": ..., "numpy": ..., "scipy": ..., "python": ...}`` from the
    installed distributions' metadata (importing none of them); absent ones are left out."""
    found = {}
    for distribution, label in PACKAGES.items():
        try:
            found[label] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            pass
    found["python"] = platform.python_version()
    return found


def command_line(script: str, argv=None) -> str:
    """``python benchmarks/SCRIPT ARGS`` as it can be re-run from the repository root.

    :param str script: the script's ``__file__``.
    :param argv: its arguments (default ``sys.argv[1:]``).
    """
    args = sys.argv[1:] if argv is None else list(argv)
    return " ".join(shlex.quote(a) for a in ["python", f"benchmarks/{pathlib.Path(script).name}", *map(str, args)])


def provenance(script: str, argv=None, *, seed: int | None = None, threads: int | None = None) -> dict:
    """The start of a result's ``meta``: command, date, seed, versions, torch threads,
    ``OMP_WAIT_POLICY``, CPU model, vector features and cores, git revision, load average.
    :func:`finish` adds the end."""
    meta = dict(command=command_line(script, argv), date=utc_now(), seed=seed, **versions())
    if threads is not None:
        meta["threads"] = threads
    meta.update(omp_wait_policy=os.environ.get("OMP_WAIT_POLICY", ""), cpu=cpu_model(), cpu_features=cpu_features(),
                cores=os.cpu_count(), git=git_revision(), load_start=load_average(), started=time.perf_counter())
    return meta


def finish(meta: dict) -> dict:
    """Set ``load_end`` and ``wall_seconds`` (since :func:`provenance`) in ``meta`` (again at
    each call, e.g. before each partial write of a long run); returns ``meta``."""
    meta["load_end"] = load_average()
    if "started" in meta:
        meta["wall_seconds"] = time.perf_counter() - meta["started"]
    return meta


def checkpoint_label(path) -> str:
    """``path`` relative to the repository root when it lies inside it, else as given."""
    try:
        return str(pathlib.Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def load_saved(path, bound_key: str | None = None) -> dict:
    """A saved result (``{"meta": ..., ...}``) for ``--render``. With ``bound_key``, a result
    written before ``meta[bound_key]`` was recorded gets it from :func:`demo_test_bound` (of
    ``meta["checkpoint"]`` at ``meta["updates"]``), and the file is rewritten with it."""
    path = pathlib.Path(path)
    saved = json.loads(path.read_text())
    meta = saved.get("meta")
    if bound_key is not None and meta is not None and bound_key not in meta:
        meta[bound_key] = demo_test_bound(ROOT / meta["checkpoint"], meta["updates"])
        path.write_text(json.dumps(saved, indent=1))
    return saved


def demo_test_bound(checkpoint, step: int):
    """The test bound (nats/image) that ``make demo`` wrote to ``test_bound.json`` beside
    ``checkpoint``, if it was computed for the checkpoint's ``step``; else ``None``
    (:func:`pyro_bfn.pretrained.bound_beside_checkpoint`)."""
    from pyro_bfn.pretrained import bound_beside_checkpoint

    return (bound_beside_checkpoint(pathlib.Path(checkpoint), step) or {}).get("nats")


# --------------------------------------------------------------------------- command line
def passive_openmp() -> None:
    """``OMP_WAIT_POLICY=PASSIVE`` unless set (idle OpenMP threads sleep instead of spinning,
    which matters on a shared machine; see :mod:`pyro_bfn.cli`). Call before torch loads."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def integer_at_least(minimum: int):
    """An argparse type: an integer of at least ``minimum``, checked with
    :func:`pyro_bfn.checks.check_integer` (the error names what it got)."""

    def parse(text: str) -> int:
        from pyro_bfn.checks import check_integer  # here: pyro_bfn loads torch, after passive_openmp()

        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        try:
            return check_integer("the value", value, minimum)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = f"integer >= {minimum}"
    return parse


#: argparse types: an integer >= 1 and an integer >= 0
positive_int = integer_at_least(1)
non_negative_int = integer_at_least(0)


def parser(doc: str, *, out=RESULTS, seed: int = 0, threads: int | None = 1, device: str | None = "cpu",
           render: str | None = None):
    """The argument parser every script starts from: its docstring as the description, and
    ``--out`` (directory of the result files; ``out=None``: none unless given), ``--seed``,
    ``--threads`` (torch threads; ``None`` keeps torch's choice), unless ``device`` is ``None``
    ``--device``, and with ``render`` (what re-rendering does, for the help) ``--render JSON``.
    It also sends the library's log records (the trainer's status lines) to stderr, as the
    ``pyro-bfn`` command does."""
    from pyro_bfn.training import log_to_stderr

    log_to_stderr()
    result = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    result.add_argument("--out", type=pathlib.Path, default=out,
                        help="directory for the result files (default " + (f"{out})" if out else "none: print only)"))
    result.add_argument("--seed", type=int, default=seed, help=f"random seed (default {seed})")
    result.add_argument("--threads", type=positive_int, default=threads,
                        help="torch threads (default: " + ("torch's choice" if threads is None else str(threads)) + ")")
    if device is not None:
        result.add_argument("--device", default=device, help=f"torch device (default {device})")
    if render is not None:
        result.add_argument("--render", type=pathlib.Path, default=None, metavar="JSON", help=render)
    return result


def add_configs(parser, known, defaults, quick_defaults, quick: str) -> None:
    """``--configs NAME ...`` (names of ``known``; default ``defaults``) and ``--quick`` (``quick``
    says what it does; its default configurations are ``quick_defaults``). Resolve them with
    :func:`selected_configs`."""
    parser.add_argument("--configs", nargs="*", default=None,
                        help=f"names (default: {', '.join(defaults)}; --quick: {', '.join(quick_defaults)}). "
                        f"Known: {', '.join(known)}")
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.set_defaults(_configs=(known, defaults, quick_defaults))


def selected_configs(parser, args) -> list:
    """The configurations that ``--configs`` / ``--quick`` select (:func:`add_configs`); an unknown
    name is a usage error that lists the known ones."""
    known, defaults, quick_defaults = args._configs
    names = args.configs or (quick_defaults if args.quick else defaults)
    unknown = [n for n in names if n not in known]
    if unknown:
        parser.error(f"unknown configs {unknown}; known: {', '.join(known)}")
    return names


def set_threads(threads: int | None) -> None:
    """``torch.set_num_threads(threads)`` unless ``threads`` is ``None``."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


# --------------------------------------------------------------------------- timing
def timer(device=None):
    """A function ``timed(fn) -> seconds`` of one call of ``fn``, wall clock
    (:func:`time.perf_counter`), synchronising CUDA before and after on a CUDA ``device``."""
    cuda = device is not None and getattr(device, "type", str(device)).startswith("cuda")

    def sync():
        if cuda:
            import torch

            torch.cuda.synchronize()

    def timed(fn) -> float:
        sync()
        start = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - start

    return timed


def alternate(calls: dict, repeats: int, timed=None) -> dict:
    """Time ``repeats`` rounds of every call of ``calls`` (``name -> fn``), the calls taking turns
    within each round, so that load from other processes hits all of them alike.

    :returns: ``name -> [seconds of each round]``.
    """
    timed = timed or timer()
    seconds = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            seconds[name].append(timed(fn))
    return seconds


def throughput(seconds: list, batch: int) -> dict:
    """``seconds`` (one call each) summarised for ``batch`` examples per call: ``median_s``,
    ``per_s`` (examples/s at the median) and ``best_per_s`` (at the fastest call: on a shared
    machine the one least disturbed by other processes)."""
    median = statistics.median(seconds)
    return dict(seconds=list(seconds), median_s=median, per_s=batch / median, best_per_s=batch / min(seconds))


def seeded_batches(spec, raw, seed: int, batch_size: int):
    """The batches of ``raw`` as :func:`pyro_bfn.evaluation.evaluate_bound` prepares them in
    its first pass (:func:`pyro_bfn.evaluation.seeded_draws` and
    :func:`pyro_bfn.evaluation.prepared_batches`), so that what a study computes on them sees
    the draws of that bound. The global generator is restored afterwards.

    :param spec: a :class:`pyro_bfn.zoo.DatasetSpec`.
    :param raw: raw examples, shape ``(N, *data_shape)``.
    """
    from pyro_bfn.evaluation import prepared_batches, seeded_draws

    with seeded_draws(seed) as generator:
        yield from prepared_batches(spec, raw, batch_size, generator)


# --------------------------------------------------------------------------- results
def markdown_table(columns, rows, numeric_from: int = 1) -> str:
    """A Markdown table; columns from index ``numeric_from`` on are right-aligned."""
    def row(cells):
        return "| " + " | ".join(str(c) for c in cells) + " |"

    aligns = ["---" if i < numeric_from else "---:" for i in range(len(columns))]
    return "\n".join([row(columns), row(aligns)] + [row(r) for r in rows])


def header_lines(meta: dict, title: str | None = None) -> list:
    """The top of a result's Markdown: ``# title`` (when given) and the provenance lines, from
    whichever of the keys of :func:`provenance` / :func:`finish` ``meta`` has (results written
    by older versions of a script lack some)."""
    date = ["Date: " + meta.get("date", "not recorded")]
    if meta.get("seed") is not None:
        date.append(f"seed {meta['seed']}")
    if meta.get("wall_seconds") is not None:
        date.append(f"wall time {meta['wall_seconds'] / 60:.1f} min")
    libraries = ", ".join(f"{label} {meta[label]}" for label in ("torch", "pyro", "scipy", "numpy") if meta.get(label))
    if libraries:
        date.append(libraries)
    if meta.get("threads") is not None:
        date.append(f"{meta['threads']} torch thread(s)"
                    + (f", OMP_WAIT_POLICY={meta['omp_wait_policy']}" if meta.get("omp_wait_policy") else ""))
    details = ([f"{meta['cores']} cores"] if meta.get("cores") else []) + [
        meta.get("cpu_features") or "vector features not recorded"]
    date.append(f"CPU {meta.get('cpu', 'unknown')} ({'; '.join(details)})")
    date.append(f"git {meta.get('git', 'unknown')}")
    lines = ([f"# {title}", ""] if title else []) + [f"Command: `{meta.get('command', '?')}`  ", "; ".join(date) + "  "]
    if meta.get("load_start"):
        lines.append(f"Load average (1, 5, 15 min): {meta['load_start']} at the start, "
                     f"{meta.get('load_end', 'not recorded')} at the end.")
    return lines


def write_results(out_dir, stem: str, markdown: str, meta: dict | None = None, plots=(), **payload) -> pathlib.Path:
    """Print ``markdown`` and write it to ``OUT/STEM.md``; with ``meta``, also
    ``OUT/STEM.json`` = ``{"meta": meta + {"plots": [file names]}, **payload}``.

    :returns: the path of the Markdown file.
    """
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    print(markdown)
    path = out_dir / f"{stem}.md"
    path.write_text(markdown if markdown.endswith("\n") else markdown + "\n")
    written = [path]
    if meta is not None:
        meta = {k: v for k, v in meta.items() if k != "started"}  # a perf_counter reading, meaningless later
        meta["plots"] = [pathlib.Path(p).name for p in plots if p]
        written.append(out_dir / f"{stem}.json")
        written[-1].write_text(json.dumps(dict(meta=meta, **payload), indent=1, default=str))
    print("wrote " + ", ".join(map(str, written + [p for p in plots if p])), file=sys.stderr, flush=True)
    return path


def save_figure(figure, path, dpi: int = 120) -> str:
    """Lay out and write a matplotlib figure (e.g. from :func:`pyro_bfn.plotting.new_figure`);
    returns the path as a string."""
    figure.tight_layout()
    figure.savefig(path, dpi=dpi)
    return str(path)


def read_run_log(run_dir, name: str = "train") -> list:
    """The rows of a run's ``train`` or ``valid`` log (:meth:`pyro_bfn.training.RunLog.rows`)."""
    from pyro_bfn.training import RunLog

    return RunLog(run_dir).rows(name)
