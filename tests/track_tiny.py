"""Run ``lang-sam track`` or ``lang-sam app`` with the video test engines registered (for
subprocess tests).

    python tests/track_tiny.py track ENGINE_DIR clips/ --prompt red --output out
    python tests/track_tiny.py app ENGINE_DIR --port 7860 --max-frames 50
"""

import sys
from pathlib import Path

from lang_sam.cli import main
from track_helpers import VideoEngines

if __name__ == "__main__":
    command, folder, rest = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
    engines = VideoEngines(folder)
    sys.exit(main([command, *rest, *engines.flags()]))
