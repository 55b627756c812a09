"""pyro-bfn: Bayesian Flow Networks (Graves et al. 2023, arXiv 2308.07037) for Pyro.

The main names, importable from the package itself::

    from pyro_bfn import BFN, DiscreteData, build_bfn, get_dataset, evaluate_bound

* the model: :class:`~pyro_bfn.bfn.BFN` and its :class:`~pyro_bfn.bfn.LossTerms`; the data types
  :class:`~pyro_bfn.data_types.ContinuousData`, :class:`~pyro_bfn.data_types.DiscretisedData`,
  :class:`~pyro_bfn.data_types.DiscreteData` and their schedules
  :class:`~pyro_bfn.schedules.ContinuousSchedule`, :class:`~pyro_bfn.schedules.DiscreteSchedule`;
* sampling: :func:`~pyro_bfn.sampling.registry.get_sampler`, :func:`~pyro_bfn.sampling.registry.list_samplers`;
* Pyro: :class:`~pyro_bfn.infer.BFNLikelihood`, :func:`~pyro_bfn.infer.bfn_model`,
  :func:`~pyro_bfn.infer.bfn_guide`;
* named datasets and models: :func:`~pyro_bfn.zoo.build_bfn`, :func:`~pyro_bfn.zoo.get_dataset`,
  :func:`~pyro_bfn.zoo.list_datasets`, :func:`~pyro_bfn.zoo.register_dataset`,
  :func:`~pyro_bfn.models.register_backbone`; training: :func:`~pyro_bfn.training.train`
  (also on the user's own tensors, files or DataLoaders), :class:`~pyro_bfn.training.TrainConfig`,
  :class:`~pyro_bfn.training.Trainer`, :func:`~pyro_bfn.training.load_model`; evaluation:
  :func:`~pyro_bfn.evaluation.evaluate_bound`; pretrained models:
  :func:`~pyro_bfn.pretrained.save_pretrained`, :func:`~pyro_bfn.pretrained.from_pretrained`;
* :data:`~pyro_bfn.models.NULL_LABEL`, the null class label of conditional backbones.

Each name is defined in (and documented with) its module; this package only re-exports it.
"""

__version__ = "0.1.0"

from .bfn import BFN, LossTerms
from .data_types import ContinuousData, DiscreteData, DiscretisedData
from .evaluation import evaluate_bound
from .infer import BFNLikelihood, bfn_guide, bfn_model
from .models import NULL_LABEL, register_backbone
from .pretrained import from_pretrained, save_pretrained
from .sampling import get_sampler, list_samplers
from .schedules import ContinuousSchedule, DiscreteSchedule
from .training import TrainConfig, Trainer, TrainResult, load_model, train
from .zoo import DatasetSpec, build_bfn, get_dataset, list_datasets, register_dataset

__all__ = [
    "BFN",
    "BFNLikelihood",
    "ContinuousData",
    "ContinuousSchedule",
    "DatasetSpec",
    "DiscreteData",
    "DiscreteSchedule",
    "DiscretisedData",
    "LossTerms",
    "NULL_LABEL",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "__version__",
    "bfn_guide",
    "bfn_model",
    "build_bfn",
    "evaluate_bound",
    "from_pretrained",
    "get_dataset",
    "get_sampler",
    "list_datasets",
    "list_samplers",
    "load_model",
    "register_backbone",
    "register_dataset",
    "save_pretrained",
    "train",
]
