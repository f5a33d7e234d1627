r"""Hand-derived gradients against autodiff: one row per formula and parameter.

  ./launch.sh gradcheck
  python -m experiments.gradcheck --seed=3 --rtol=1e-12

Prints one row per formula and parameter leaf (max absolute and relative
difference, PASS when the relative one is <= --rtol), then `N passed, M failed`;
exits 1 on any failure. Writes --page (docs/derivations.md): each formula and
its hand-derived gradient as their docstrings state them, linked, with the rows
that check them (research/reports/derivations.py). What is checked, and which
rows exist: research/formulas/derivations.py. The shapes are fixed there (the
data and model flags of the other entry points are not taken)."""

import sys

from absl import flags

from experiments import _flag_spec
from experiments import _flags
from experiments import _run
from research.formulas import derivations

_flag_spec.use('seed')  # of the random problems
_SEED = _flags.SEED
_RTOL = _flag_spec.define_float(
  'rtol', 1e-10, 'Largest relative difference that passes.', lower_bound=0.0
)
_PAGE = flags.DEFINE_string(
  'page',
  str(_run.REPO / 'docs' / 'derivations.md'),
  'The derivations page written from the rows (empty: none).',
)


def main(_):
  rows = derivations.check_all(_SEED.value, _RTOL.value)
  for formula, diff in rows:
    _run.log(derivations.format_row(formula, diff))
  failed = sum(not diff.ok for _, diff in rows)
  if _PAGE.value:
    from research.reports import derivations as page  # noqa: PLC0415

    _run.log(f'wrote {page.page(rows, _PAGE.value, _SEED.value, _RTOL.value)}')
  _run.log(f'{len(rows) - failed} passed, {failed} failed')
  if failed:
    sys.exit(1)


if __name__ == '__main__':
  _run.run(main)
