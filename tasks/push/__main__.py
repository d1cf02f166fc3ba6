"""``python -m smartcache.tasks.push``: the push node."""

import sys

from smartcache.tasks.push.task import main

sys.exit(main())
