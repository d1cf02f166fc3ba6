"""``python -m smartcache.tasks.train``: the train node."""

import sys

from smartcache.tasks.train.task import main

sys.exit(main())
