import sys

from stack.launcher import main

sys.exit(main())
