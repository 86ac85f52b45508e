"""``python -m mne_mmnet.bench``: same as ``mne-mmnet benchmark``."""

import sys

from ._cli import main

sys.exit(main())
