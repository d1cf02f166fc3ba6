"""``python -m smartcache.tasks.score``: the score node."""

import sys

from smartcache.tasks.score.task import main

sys.exit(main())
