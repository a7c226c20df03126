"""The inspector: the process that answers the dashboard's model questions, and its client.

The dashboard imports this package (the client imports no Keras); the server
(`python -m core.inspector.server`) builds stacks, opens model files and evaluates runs.
"""

from core.inspector.client import InspectorClient, InspectorError, get_client

__all__ = ["InspectorClient", "InspectorError", "get_client"]
