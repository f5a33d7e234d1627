"""Rendering: markdown tables and pages, CSV, PNG plots, shared prose.

The studies (research/studies) and the results page build their outputs from
these pieces; definitions that several reports state are written once here.
"""

import csv
import io
import pathlib

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402 (after choosing the backend)
import numpy as np  # noqa: E402

from research import files  # noqa: E402

F1_DEFINITION = (
  'F1 is entity F1 (%) with the semantics of conlleval '
  '(research/evaluation/metrics.py).'
)


_REPO = pathlib.Path(__file__).resolve().parents[2]


def shown_path(path):
  """A data path as a report shows it: relative to the repository when it
  lies inside it (data/wikigold), as given when relative, and otherwise its
  last two parts (…/data/conll2003): never a machine's absolute path."""
  p = pathlib.Path(path)
  if not p.is_absolute():
    return str(path)
  try:
    return str(p.resolve().relative_to(_REPO))
  except ValueError:
    return '…/' + '/'.join(p.parts[-2:])


def markdown_table(headers, rows):
  """A GitHub markdown table; cells are written with str()."""
  lines = [
    '| ' + ' | '.join(map(str, headers)) + ' |',
    '|' + '|'.join('---' for _ in headers) + '|',
  ]
  lines += ['| ' + ' | '.join(map(str, row)) + ' |' for row in rows]
  return '\n'.join(lines)


def write_csv(path, headers, rows):
  """Writes a CSV file, atomically (research/files.py)."""
  out = io.StringIO(newline='')
  writer = csv.writer(out)
  writer.writerow(headers)
  writer.writerows(rows)
  files.write_text(path, out.getvalue())


def mean_std(values, fmt='{:.2f}'):
  """'m ± s' over seeds (population std; just 'm' for one value)."""
  values = np.asarray(values, dtype=float)
  if len(values) == 1:
    return fmt.format(values[0])
  return f'{fmt.format(values.mean())} ± {fmt.format(values.std())}'


def points(n, most=30):
  """Line-plot keywords for a line of `n` points: a marker on each when
  they are few (one point drawn as a bare line is invisible)."""
  return dict(marker='o', ms=4) if n <= most else {}


def figure(ncols=1, width=5.0, height=3.6):
  fig, axes = plt.subplots(
    1, ncols, figsize=(width * ncols, height), squeeze=False
  )
  return fig, axes[0]


def save(fig, path):
  """Saves a figure as PNG and closes it; returns the file name."""
  path = pathlib.Path(path)
  fig.tight_layout()
  files.write_with(path, lambda f: fig.savefig(f, dpi=120, format='png'))
  plt.close(fig)
  return path.name


def write_report(path, title, sections):
  """Writes a markdown page: `sections` is a list of (heading, body) where
  body is markdown text (tables, `![](plot.png)` lines)."""
  parts = [f'# {title}', '']
  for heading, body in sections:
    parts += [f'## {heading}', '', body.strip(), '']
  files.write_text(path, '\n'.join(parts))
