"""``python -m smartcache.tasks.reduce``: the reduce node."""

import sys

from smartcache.tasks.reduce.task import main

sys.exit(main())
