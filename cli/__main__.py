import sys

from devflow_monitor.cli import main

sys.exit(main())
