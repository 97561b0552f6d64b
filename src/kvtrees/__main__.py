"""`python -m kvtrees ...` is the `kvtrees` command."""
import sys

from kvtrees.cli import main

sys.exit(main())
