"""Neural backbones for pyro-bfn, installed as ``pyro_bfn.models``."""
