"""The reference implementation beside pyro-bfn: ``speed.py --reference DIR`` (not a script).

The reference implementation of the paper is `nnaisense/bayesian-flow-networks
<https://github.com/nnaisense/bayesian-flow-networks>`_. Its code is never vendored or committed
here; the user obtains a checkout and names it at run time::

    git clone https://github.com/nnaisense/bayesian-flow-networks /tmp/bayesian-flow-networks
    python benchmarks/speed.py --reference /tmp/bayesian-flow-networks --threads 2

Only its model code is imported (``utils_model.py``, ``probability.py``, ``model.py``, the
``networks`` package: torch and numpy only), from the checkout's files by path, without
touching ``sys.path``. Its ``utils_train.make_bfn`` is not imported (that module pulls in
``accelerate``, ``omegaconf``, ``rich``, ``neptune`` and the data loaders for its training
loop); :func:`build_reference` repeats its eight lines of wiring instead, on the checkout's own
``configs/mnist_discrete.yaml`` (read with PyYAML).

Two networks, the reference's binarized-MNIST U-Net configuration and ours built to match it:

* ``small``: ``mnist_discrete.yaml`` with ``model_channels: 32, num_res_blocks: 1,
  out_channels: 32`` and the output adapter's ``input_height: 64`` (2 x 32, as 256 = 2 x 128
  in the file) = ``unet_mnist_small_variant`` (1,080,545 parameters), dropout 0.5 in both
  (the reference's setting; our configuration's default is 0);
* ``paper``: ``mnist_discrete.yaml`` as it is = ``unet_mnist_paper`` (24,808,961 parameters).

:func:`side_by_side` times both in one process, steps alternated (:func:`harness.alternate`):
training (continuous-time loss forward + backward + AdamW; no gradient clipping, no EMA),
likelihood evaluation (:math:`L^\\infty + L^r` under ``torch.inference_mode``), sampling
(ancestral, 100 steps) and "flow + loss" (a training step with the network replaced by a
stored output). The reference runs in float32 (its only CPU mode); pyro-bfn in float32 and in
its default ``autocast: auto`` (:func:`pyro_bfn.training.devices.resolve_autocast`: bf16 on a
CPU with bf16 units, float32 elsewhere).
"""

from __future__ import annotations

import importlib.util
import pathlib
import statistics
import subprocess
import sys
from functools import partial

import harness

#: the files of a checkout that the adapter reads (relative to its root)
REQUIRED_FILES = ("model.py", "probability.py", "utils_model.py", "networks/__init__.py", "networks/unet_improved.py",
                  "networks/adapters.py", "configs/mnist_discrete.yaml")
#: the reference's top-level module names, in import order
MODULES = ("utils_model", "probability", "model", "networks")
CLONE = "git clone https://github.com/nnaisense/bayesian-flow-networks"

#: name -> (overrides of the reference's model config: section -> parameters, our backbone, its overrides)
NETWORKS = {
    "small": (dict(net=dict(model_channels=32, num_res_blocks=1, out_channels=32),
                   output_adapter=dict(input_height=64)),
              "unet_mnist_small_variant", dict(dropout=0.5)),
    "paper": ({}, "unet_mnist_paper", {}),
}
#: the rows of the study: (kind, network, batch)
FULL_ROWS = [("train", "small", 8), ("train", "small", 32), ("train", "paper", 8), ("eval", "small", 100),
             ("sample", "small", 16)]
QUICK_ROWS = [("train", "small", 2), ("eval", "small", 2), ("sample", "small", 2)]
SETTINGS = {
    "full": dict(warmup=3, repeats=50, paper_warmup=2, paper_repeats=16, eval_repeats=24, sample_repeats=5,
                 sample_steps=100, flow_repeats=50),
    "quick": dict(warmup=1, repeats=1, paper_warmup=1, paper_repeats=1, eval_repeats=1, sample_repeats=1,
                  sample_steps=2, flow_repeats=1),
}
GOAL = 2.0


class ReferenceCheckoutError(ValueError):
    """The directory given to ``--reference`` is not a usable checkout of the reference."""


# --------------------------------------------------------------------------- import
def check_checkout(directory) -> pathlib.Path:
    """``directory`` resolved, after checking that it holds the reference's model code.

    :raises ReferenceCheckoutError: naming what is missing, and how to obtain a checkout.
    """
    path = pathlib.Path(directory).expanduser()
    if not path.is_dir():
        raise ReferenceCheckoutError(f"--reference {directory}: not a directory; obtain the reference implementation "
                                     f"with `{CLONE}` and pass the clone's directory")
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise ReferenceCheckoutError(f"--reference {directory}: not a checkout of nnaisense/bayesian-flow-networks "
                                     f"(missing {', '.join(missing)}); obtain it with `{CLONE}`")
    return path.resolve()


def checkout_revision(path: pathlib.Path) -> str:
    """The checkout's git commit (short), or ``"unknown (not a git checkout)"``."""
    try:
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown (git not available)"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown (not a git checkout)"


def import_reference(directory) -> dict:
    """Import the reference's model modules from the checkout ``directory`` by file path
    (they import each other by top-level name, so each is registered in ``sys.modules`` under
    its own name before the next is loaded); returns ``name -> module``.

    :raises ReferenceCheckoutError: for a directory that is not a checkout, or when a module of
        the same name from elsewhere is already imported in this process.
    """
    path = check_checkout(directory)
    modules = {}
    for name in MODULES:
        loaded = sys.modules.get(name)
        if loaded is not None:
            origin = pathlib.Path(getattr(loaded, "__file__", "") or "").resolve()
            if path not in origin.parents:
                raise ReferenceCheckoutError(f"--reference {directory}: a module named {name!r} from {origin} is "
                                             "already imported in this process; the reference's cannot be loaded")
            modules[name] = loaded
            continue
        package = path / name / "__init__.py"
        location = package if package.is_file() else path / f"{name}.py"
        spec = importlib.util.spec_from_file_location(
            name, location, submodule_search_locations=[str(location.parent)] if package.is_file() else None)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except ImportError as error:
            del sys.modules[name]
            raise ReferenceCheckoutError(f"--reference {directory}: importing its {name} failed ({error}); only torch "
                                         "and numpy should be needed") from error
        modules[name] = module
    return modules


def build_reference(modules: dict, directory, network: str):
    """The reference's ``model.BFN`` for binarized MNIST from its ``configs/mnist_discrete.yaml``
    with the net overrides of :data:`NETWORKS` (``utils_train.make_bfn``'s wiring)."""
    import yaml

    cfg = yaml.safe_load((pathlib.Path(directory) / "configs" / "mnist_discrete.yaml").read_text())["model"]
    for section, parameters in NETWORKS[network][0].items():
        cfg[section]["parameters"].update(parameters)
    adapters = modules["networks"].adapters

    def make(module, entry, **extra):
        return getattr(module, entry["class_name"])(**entry["parameters"], **extra)

    data_adapters = dict(input_adapter=make(adapters, cfg["input_adapter"]),
                         output_adapter=make(adapters, cfg["output_adapter"]))
    net = make(modules["networks"], cfg["net"], data_adapters=data_adapters)
    flow = make(modules["model"], cfg["bayesian_flow"])
    factory = make(modules["probability"], cfg["distribution_factory"])
    loss = make(modules["model"], cfg["loss"], bayesian_flow=flow, distribution_factory=factory)
    return modules["model"].BFN(net=net, bayesian_flow=flow, loss=loss)


def build_ours(network: str):
    """Our BFN for binarized MNIST with the backbone that matches :data:`NETWORKS` ``[network]``."""
    from pyro_bfn.zoo import build_bfn, get_dataset

    _, backbone, options = NETWORKS[network]
    return build_bfn("binarized_mnist", backbone, backbone_options=options or None), get_dataset("binarized_mnist")


def _params(module) -> int:
    return sum(p.numel() for p in module.parameters())


# --------------------------------------------------------------------------- measurement
class _Pair:
    """The reference's BFN and ours on the same network, with their optimisers and a batch."""

    def __init__(self, modules, directory, network: str, batch: int, seed: int):
        import torch

        from pyro_bfn.training import make_optimizer

        torch.manual_seed(seed)
        self.ref = build_reference(modules, directory, network)
        self.ours, spec = build_ours(network)
        self.params = (_params(self.ref), _params(self.ours))
        if self.params[0] != self.params[1]:
            raise RuntimeError(f"{network}: the reference has {self.params[0]:,} parameters, ours {self.params[1]:,}; "
                               "not the same network")
        bits = torch.randint(0, 2, (batch, 28, 28), generator=torch.Generator().manual_seed(seed))
        self.x_ref = bits.reshape(batch, 28, 28, 1).int()  # the reference's bin_mnist layout (H, W, C)
        self.x_ours = bits.reshape(batch, *spec.data_shape)
        self.batch = batch
        # the reference's train.py: torch.optim.AdamW(**cfg.optimizer), lr 1e-4, betas (0.9, 0.98)
        self.opt_ref = torch.optim.AdamW(self.ref.parameters(), lr=1e-4, betas=(0.9, 0.98))
        self.opt_ours = make_optimizer(self.ours.parameters(), 1e-4, (0.9, 0.98), 0.01)  # as our training: fused

    def train_ref(self):
        self.opt_ref.zero_grad(set_to_none=True)
        self.ref(self.x_ref).backward()
        self.opt_ref.step()

    def train_ours(self, dtype):
        self.ours.autocast_dtype = dtype
        self.opt_ours.zero_grad(set_to_none=True)
        self.ours.loss(self.x_ours, reconstruction=False).total.mean().backward()
        self.opt_ours.step()

    def eval_ref(self):
        import torch

        with torch.inference_mode():
            (self.ref(self.x_ref) + self.ref.compute_reconstruction_loss(self.x_ref)).item()

    def eval_ours(self, dtype):
        import torch

        self.ours.autocast_dtype = dtype
        with torch.inference_mode():
            self.ours.loss(self.x_ours, reconstruction=True).total.sum().item()

    def sample_ref(self, n_steps):
        self.ref.sample((self.batch, 28, 28, 1), n_steps)

    def sample_ours(self, dtype, n_steps):
        self.ours.autocast_dtype = dtype
        self.ours.sample(self.batch, n_steps)

    def flow_loss(self, repeats: int, timed) -> dict:
        """Median ms of a training step's forward + backward with each network replaced by a
        module returning its stored output (the flow, the output distribution, the loss)."""
        import torch
        from torch import nn

        from pyro_bfn.bfn import BFN
        from speed_configs import stored_output_network

        class StoredReference(nn.Module):  # the reference's net is called as net(net_inputs, t)
            def __init__(self, stored):
                super().__init__()
                self.output = nn.Parameter(stored)

            def forward(self, net_inputs, t):
                return self.output

        with torch.no_grad():
            t = self.ref.sample_t(self.x_ref, None)
            ref_inputs = self.ref.bayesian_flow.params_to_net_inputs(self.ref.bayesian_flow(self.x_ref, t))
            stored_ref = self.ref.net(ref_inputs, t).detach().clone()
            data_type = self.ours.data_type
            t_ours = torch.rand(self.batch)
            features = data_type.network_features(data_type.sample_input(self.x_ours, t_ours))
            stored_ours = self.ours.network(features, t_ours).detach().clone()
        ref_stub = type(self.ref)(net=StoredReference(stored_ref), bayesian_flow=self.ref.bayesian_flow,
                                  loss=self.ref.loss).train()
        ours_stub = BFN(data_type, stored_output_network(stored_ours), self.ours.data_shape).train()

        def ref_step():
            ref_stub.zero_grad(set_to_none=True)
            ref_stub(self.x_ref).backward()

        def ours_step():
            ours_stub.zero_grad(set_to_none=True)
            ours_stub.loss(self.x_ours, reconstruction=False).total.mean().backward()

        for _ in range(3):
            ref_step(), ours_step()
        times = harness.alternate(dict(reference=ref_step, ours=ours_step), repeats, timed)
        return {name: 1e3 * statistics.median(v) for name, v in times.items()}


def _modes(pair: _Pair, kind: str, default_dtype, n_steps=None) -> dict:
    """name -> call for the reference (fp32), ours fp32, and ours in its default autocast (when
    that is not fp32 on this CPU)."""
    ours = {"train": pair.train_ours, "eval": pair.eval_ours, "sample": pair.sample_ours}[kind]
    ref = {"train": pair.train_ref, "eval": pair.eval_ref, "sample": pair.sample_ref}[kind]
    extra = (n_steps,) if kind == "sample" else ()
    calls = {"reference": partial(ref, *extra), "ours_fp32": partial(ours, None, *extra)}
    if default_dtype is not None:
        calls["ours_default"] = partial(ours, default_dtype, *extra)
    return calls


def side_by_side(directory, *, quick: bool = False, seed: int = 0, log=print) -> dict:
    """Time the reference and pyro-bfn side by side (see the module docstring); returns
    ``{"rows": [...], "configs": {...}, "settings": ..., "reference_git": ..., "default_autocast": ...}``."""
    import torch

    from pyro_bfn.training.devices import resolve_autocast

    path = check_checkout(directory)
    modules = import_reference(path)
    s = SETTINGS["quick" if quick else "full"]
    default_dtype, _ = resolve_autocast("auto", torch.device("cpu"))
    timed = harness.timer()
    rows, configs = [], {}
    for kind, network, batch in (QUICK_ROWS if quick else FULL_ROWS):
        log(f"[reference] {kind} {network} batch {batch} (load {harness.load_average()}) ...")
        pair = _Pair(modules, path, network, batch, seed)
        paper = network == "paper"
        if kind == "train":
            pair.ref.train(), pair.ours.train()
            calls = _modes(pair, kind, default_dtype)
            warmup, repeats = (s["paper_warmup"], s["paper_repeats"]) if paper else (s["warmup"], s["repeats"])
        elif kind == "eval":
            pair.ref.eval(), pair.ours.eval()
            calls = _modes(pair, kind, default_dtype)
            warmup, repeats = 1, s["eval_repeats"]
        else:
            pair.ref.eval(), pair.ours.eval()
            calls = _modes(pair, kind, default_dtype, s["sample_steps"])
            for call in _modes(pair, kind, default_dtype, 2).values():  # warm-up: a 2-step run each
                call()
            warmup, repeats = 0, s["sample_repeats"]
        for _ in range(warmup):
            for call in calls.values():
                call()
        times = harness.alternate(calls, repeats, timed)
        row = dict(kind=kind, network=network, batch=batch, params=pair.params[0], warmup=warmup, repeats=repeats,
                   n_steps=s["sample_steps"] if kind == "sample" else None,
                   **{name: harness.throughput(v, batch) for name, v in times.items()})
        if "ours_default" not in row:
            row["ours_default"] = row["ours_fp32"]  # no bf16 units: the default is float32
        for mode in ("ours_fp32", "ours_default"):
            row[f"{mode}_speed_up"] = row[mode]["per_s"] / row["reference"]["per_s"]
        if kind == "train":
            pair.ref.train(), pair.ours.train()
            flow = pair.flow_loss(s["flow_repeats"], timed)
            row["flow_loss_ms"] = flow
            row["flow_share"] = {mode: flow["reference" if mode == "reference" else "ours"] / (1e3 * row[mode]["median_s"])
                                 for mode in ("reference", "ours_fp32", "ours_default")}
            configs[f"mnist_{'paper' if paper else 'small_variant'}_b{batch}"] = dict(
                reference_ex_s_median=row["reference"]["per_s"], reference_ex_s_best=row["reference"]["best_per_s"],
                ours_ex_s_median=row["ours_fp32"]["per_s"], ours_default_ex_s_median=row["ours_default"]["per_s"],
                speed_up=row["ours_fp32_speed_up"], default_speed_up=row["ours_default_speed_up"],
                reference_flow_loss_ms=flow["reference"], ours_flow_loss_ms=flow["ours"],
                reference_flow_share=row["flow_share"]["reference"], ours_flow_share=row["flow_share"]["ours_fp32"],
                params=row["params"], batch=batch)
        rows.append(row)
        del pair
    return dict(rows=rows, configs=configs, settings=s, reference_dir=str(path), reference_git=checkout_revision(path),
                default_autocast=str(default_dtype).replace("torch.", "") if default_dtype is not None else "float32")


# --------------------------------------------------------------------------- table
def _what(row) -> str:
    name = {"train": "training", "eval": "bound evaluation", "sample": f"sampling, {row['n_steps']} steps"}[row["kind"]]
    return f"{name}, {'paper net' if row['network'] == 'paper' else 'small net'} ({row['params'] / 1e6:.2f}M), batch {row['batch']}"


def render(result: dict, meta: dict) -> str:
    default = result["default_autocast"]
    columns = ["", "reference fp32 (its only CPU mode)", "pyro-bfn fp32", f"pyro-bfn default ({default} autocast)",
               f">= {GOAL:.1f}x (default)"]
    rows = []
    for r in result["rows"]:
        unit = "samples/s" if r["kind"] == "sample" else "ex/s"
        rows.append([_what(r), f"{r['reference']['per_s']:.2f} {unit}" if r["reference"]["per_s"] < 10 else
                     f"{r['reference']['per_s']:.1f} {unit}",
                     f"{r['ours_fp32']['per_s']:.3g} ({r['ours_fp32_speed_up']:.2f}x)",
                     f"{r['ours_default']['per_s']:.3g} ({r['ours_default_speed_up']:.2f}x)",
                     "met" if r["ours_default_speed_up"] >= GOAL else "not met"])
    share_rows = [[_what(r), f"{r['flow_loss_ms']['reference']:.2f} / {r['flow_loss_ms']['ours']:.2f}",
                   f"{100 * r['flow_share']['reference']:.2f}%", f"{100 * r['flow_share']['ours_fp32']:.2f}%",
                   f"{100 * r['flow_share']['ours_default']:.2f}%"] for r in result["rows"] if r["kind"] == "train"]
    s = result["settings"]
    lines = [*harness.header_lines(meta, "The reference implementation and pyro-bfn, side by side on this CPU"), "",
             f"Reference: nnaisense/bayesian-flow-networks at {result['reference_git']} (a checkout given at run time, "
             "not part of this repository), its `configs/mnist_discrete.yaml`; small net = `model_channels: 32, "
             "num_res_blocks: 1, out_channels: 32` (output adapter `input_height: 64`) = our `unet_mnist_small_variant`, paper net = the file as it is = our "
             "`unet_mnist_paper`; dropout 0.5 in both (the reference's setting). One process, random binarized-MNIST "
             "batches, the calls of each row alternated; medians; the speed-up is over the reference's median.", "",
             harness.markdown_table(columns, rows), "",
             "## Flow + loss: a training step's forward + backward with the network replaced by a stored output", "",
             harness.markdown_table(["", "ms reference / ours", "share of a step: reference", "ours fp32",
                                     f"ours default ({default})"], share_rows), "",
             "## Notes", "",
             f"- Training step = continuous-time loss forward + backward + AdamW (reference: `torch.optim.AdamW` as its "
             f"`train.py`; ours: the fused AdamW of our training), no gradient clipping, no EMA. Evaluation = "
             f"L^inf + L^r (reference: `bfn(x)` + `compute_reconstruction_loss(x)`), inference mode. Sampling = the "
             f"ancestral sampler, {s['sample_steps']} steps + the final network call, from the prior.",
             f"- Repeats: small-net training {s['warmup']} warm-up + {s['repeats']} timed, paper-net training "
             f"{s['paper_warmup']} + {s['paper_repeats']}, evaluation 1 + {s['eval_repeats']}, sampling a 2-step "
             f"warm-up + {s['sample_repeats']}, flow + loss 3 + {s['flow_repeats']}.",
             f"- `default` is our `autocast: auto` (`resolve_autocast`): {default} on this CPU; the reference "
             "has no CPU autocast. The goal of issue 13 is every row >= 2.0x in the default mode."]
    if meta.get("note"):
        lines.append(f"- {meta['note']}")
    return "\n".join(lines) + "\n"
