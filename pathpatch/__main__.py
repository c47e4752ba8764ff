import sys

from pathpatch.cli import main

sys.exit(main())
