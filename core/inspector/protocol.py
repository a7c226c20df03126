"""What the inspector's client and server agree on: environment variables, defaults, exit codes, files.

Requests are JSON lines `{"id", "op", "args"}` on the server's stdin; answers are JSON lines
`{"id", "ok", "result" | "error", "kind"}` on its stdout (core.inspector.server). No Keras.
"""

GIB = 2**30
TIMEOUT_ENV = "STACKLAB_INSPECTOR_TIMEOUT_S"  # seconds one request may take
START_TIMEOUT_ENV = "STACKLAB_INSPECTOR_START_TIMEOUT_S"  # seconds to import Keras and answer
MEMORY_ENV = "STACKLAB_INSPECTOR_MEMORY_BYTES"  # the server's resident memory limit
TEST_OPS_ENV = "STACKLAB_INSPECTOR_TEST_OPS"  # "1": the server also answers the tests' requests (sleep, ...)
DEFAULT_TIMEOUT_S = 120.0
DEFAULT_START_TIMEOUT_S = 90.0
DEFAULT_MEMORY_BYTES = 6 * GIB
MEMORY_EXIT_CODE = 86  # the server's watchdog ends it with this code when it goes over MEMORY_ENV
LOG_NAME = "inspector.log"  # the server's stderr, in $STACKLAB_HOME
