"""Where StackLab keeps things, and how it writes them. No Keras import.

- `paths`: `$STACKLAB_HOME` (default `~/.stacklab`) and the folders under it.
- `uploads`: uploaded files, stored once by content (`sha256:<hex>` references).
- `atomic`: writes that leave the previous file or the whole new one, never half a file.
- `drafts`: the autosaved draft stack, with one level of undo.
- `plain`: JSON-ready values from what numpy computed.
"""
