"""`python -m ltkit.pilot ...` is `python -m ltkit pilot ...`."""
import sys

from ltkit.pilot.run import main

sys.exit(main())
