import sys

from tui_trainer.cli import main

sys.exit(main())
