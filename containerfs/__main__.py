"""`python -m containerfs` is the `containerfs` command."""

import sys

from .cli import main

sys.exit(main())
