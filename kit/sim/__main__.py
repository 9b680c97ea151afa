"""`python -m kit.sim`: run a virtual board (see kit.sim.process)."""

import sys

from kit.sim.process import main

sys.exit(main())
