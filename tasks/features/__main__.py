"""``python -m smartcache.tasks.features``: the features node."""

import sys

from smartcache.tasks.features.task import main

sys.exit(main())
