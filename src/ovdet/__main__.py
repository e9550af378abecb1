"""`python -m ovdet ...` (and `torchrun ... -m ovdet train vild ...`): the `ovdet` command."""

import sys

from ovdet.cli.main import main

sys.exit(main())
