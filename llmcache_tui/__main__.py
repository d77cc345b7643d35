"""``python -m llmcache_tui``."""

import sys

from llmcache_tui.cli import main

sys.exit(main())
