"""``python -m atebm.cli`` is ``atebm`` (as is ``python -m atebm``), so ``torchrun -m atebm.cli ...`` runs too."""
import sys

from . import main

sys.exit(main())
