"""`python -m agent`: the same as the `edge-agent` console script.

Installs the stop-signal recorder before importing anything else (agent.service.early_signals):
a SIGTERM while the command line module loads is an orderly stop, never a kill.
"""

import sys

from agent.service import early_signals

early_signals.install()

from agent.cli.main import main  # noqa: E402  (after the handlers, on purpose)

sys.exit(main())
