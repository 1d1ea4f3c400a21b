import sys

from jasmin_sfu.cli import main

sys.exit(main())
