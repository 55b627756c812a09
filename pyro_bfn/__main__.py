"""``python -m pyro_bfn``: the ``pyro-bfn`` command line (:mod:`pyro_bfn.cli`)."""

import sys

from .cli import main

sys.exit(main())
