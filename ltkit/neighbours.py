"""Moved to the package `ltkit.crawl` (this alias keeps old imports working)."""
from ltkit.crawl import *  # noqa: F401,F403
from ltkit.crawl import __all__  # noqa: F401
