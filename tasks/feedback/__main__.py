"""``python -m smartcache.tasks.feedback``: the retrain workflow's export node."""

import sys

from smartcache.tasks.feedback.task import main

sys.exit(main())
