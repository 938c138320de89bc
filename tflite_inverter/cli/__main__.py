"""``python -m tflite_inverter.cli``: the command line."""

import sys

from .main import main

sys.exit(main())
