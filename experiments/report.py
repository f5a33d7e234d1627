r"""Gathers run directories into docs/results.md, with their plots.

  ./launch.sh report                      (every run under runs/results/)
  ./launch.sh report --run_dirs=runs/sweep-20261122-101500,runs/conll \
      --output=runs/report.md

The page and what it holds are described in research/reports/results_page.py; it
names the run directories it was gathered from.
Writing the default page (docs/results.md) also rewrites README.md's headline
table from the train runs. An existing --output page that report did not
write is refused unless --overwrite.
"""

import pathlib

from absl import flags

from experiments import _flag_spec
from experiments import _flags
from experiments import _run
from research.errors import UserError
from research.reports import results_page

_flag_spec.use('overwrite')
_RUN_DIRS = flags.DEFINE_list(
  'run_dirs',
  None,
  'Run directories to gather (default: every directory under runs/results/).',
)
DEFAULT_PAGE = _run.REPO / 'docs' / 'results.md'
_UPDATE = flags.DEFINE_bool(
  'update',
  False,
  "Replace or add only the sections of --run_dirs, keeping the page's "
  'other sections as they are.',
)
_OUTPUT = flags.DEFINE_string(
  'output', str(DEFAULT_PAGE), 'The markdown page to write.'
)


def main(_):
  run_dirs = _RUN_DIRS.value
  if run_dirs is None:
    root = _run.REPO / 'runs' / 'results'
    run_dirs = sorted(str(p) for p in root.glob('*') if p.is_dir())
  if not run_dirs:
    raise UserError(
      'no run directories: pass --run_dirs=DIR[,DIR...], or '
      'run the experiments with --workdir=runs/results/NAME '
      '(docs/results.md says how for each)'
    )
  page = pathlib.Path(_OUTPUT.value)
  readme = (
    _run.REPO / 'README.md'
    if page.resolve() == DEFAULT_PAGE.resolve()
    else None
  )
  n = results_page.write(
    run_dirs,
    page,
    readme=readme,
    overwrite=_flags.OVERWRITE.value,
    update=_UPDATE.value,
  )
  _run.log(f'wrote {_OUTPUT.value} ({n} runs)')


if __name__ == '__main__':
  _run.run(main, page='output')
