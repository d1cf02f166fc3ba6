"""``python -m smartcache.tasks.evaluate``: the evaluate node."""

import sys

from smartcache.tasks.evaluate.task import main

sys.exit(main())
