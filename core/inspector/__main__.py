"""`python -m core.inspector`: the inspector's server, as `python -m core.inspector.server` runs it."""

import sys

from core.inspector.server import serve

sys.exit(serve())
