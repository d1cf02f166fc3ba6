"""``python -m smartcache.tasks.generate``: the generate node."""

import sys

from smartcache.tasks.generate.task import main

sys.exit(main())
