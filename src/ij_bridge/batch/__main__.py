"""``python -m ij_bridge.batch --worker``: a batch worker process (see :mod:`ij_bridge.batch.pool`)."""

import sys

from .pool import worker_main

if __name__ == "__main__":  # pragma: no cover - the worker process
    sys.exit(worker_main(sys.argv[1:]))
