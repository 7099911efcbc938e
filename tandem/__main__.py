"""`python -m tandem ...` is the `tandem` command (for checkouts used without installing)."""

import sys

from tandem.cli import main

sys.exit(main())
