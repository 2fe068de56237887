"""``python -m gpudra`` runs the ``gpudra`` command."""

import sys

from gpudra.cli.main import main

sys.exit(main())
