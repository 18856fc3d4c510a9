"""Run ``lang-sam track`` with the video test engines registered (for subprocess tests).

    python tests/track_tiny.py ENGINE_DIR clips/ --prompt red --output out
"""

import sys
from pathlib import Path

from lang_sam.cli import main
from track_helpers import VideoEngines

if __name__ == "__main__":
    engines = VideoEngines(Path(sys.argv[1]))
    sys.exit(main(["track", *sys.argv[2:], *engines.flags()]))
