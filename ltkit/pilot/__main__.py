"""`python -m ltkit.pilot ...` is `python -m ltkit pilot ...`."""
import sys

from ltkit.cli import main

sys.exit(main(["pilot", *sys.argv[1:]]))
