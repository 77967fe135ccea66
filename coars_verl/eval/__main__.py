import sys

from coars_verl.eval.cli import main

sys.exit(main())
