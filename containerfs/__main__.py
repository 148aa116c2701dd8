"""`python -m containerfs` is the `containerfs` command."""

import sys

from .fastexec import hand_over

hand_over(sys.argv[1:])  # `exec`: replaced by the C program, before the imports below

from .cli import main  # noqa: E402

sys.exit(main())
