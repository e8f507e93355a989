"""``python -m interpool check MODULE...``: see interpool._check."""

import sys

from ._check import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
