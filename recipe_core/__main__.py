"""`python -m recipe_core <command>`: runs the CLI (recipe_core.cli) and records its exit code for a page."""
import sys

from recipe_core.cli import main
from recipe_core.training import jobs  # light: no torch, the store the CLI opens anyway

if __name__ == "__main__":
    code = main(own_process=True)
    jobs.record_exit(code)  # started from a page: the page reads how it ended (see jobs.start_command)
    sys.exit(code)
