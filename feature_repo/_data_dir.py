"""Where this repository's offline tables live: $EBR_FEATURE_DATA, else <repo>/data/features."""

import os
from pathlib import Path

DATA_DIR = str(Path(os.environ.get("EBR_FEATURE_DATA", Path(__file__).resolve().parent.parent / "data" / "features")))
