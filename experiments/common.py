"""What every entry point shares: the default data, and clean user errors."""

import pathlib
import sys
import time

from absl import app

from research.errors import UserError

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = str(REPO / 'data' / 'wikigold')


def run(main):
  """absl.app.run(main), printing a UserError as one line and exiting 2."""
  def guarded(argv):
    try:
      return main(argv)
    except UserError as e:
      print(f'error: {e}', file=sys.stderr)
      sys.exit(2)
    except KeyboardInterrupt:
      print('interrupted', file=sys.stderr)
      sys.exit(130)
  app.run(guarded)


def default_workdir(name):
  return str(REPO / 'runs' / f'{name}-{time.strftime("%Y%m%d-%H%M%S")}')


def log(line):
  print(line, flush=True)
