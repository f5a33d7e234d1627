"""The ablation's report: results.json, results.csv, ablation.png, report.md.

The study is research/studies/ablation.py; this module renders what its
`run` returned.
"""

import numpy as np

from research import workdir as workdir_lib
from research.reports import render
from research.studies import ablation as study


def _optional(rows, key):
  """Whether any row has the column `key` (rows of older runs may not)."""
  return any(r.get(key) is not None for r in rows)


GENERALIZATION = (
  ('unseen', 'dev unseen F1'),
  ('lowercased', 'lowercased dev F1'),
  ('cross', 'cross-domain F1'),
)


def table(rows):
  """(headers, cells) of the markdown table."""
  has_test = any(r['test'] is not None for r in rows)
  extra = [(k, name) for k, name in GENERALIZATION if _optional(rows, k)]
  has_pr = _optional(rows, 'precision')
  types = sorted({t for r in rows for t in r['per_type']})
  headers = (
    ['path', 'row', 'dev F1', 'change', 'beyond spread']
    + (['dev P', 'dev R'] if has_pr else [])
    + [name for _, name in extra]
    + (['test F1'] if has_test else [])
    + [f'{t} F1' for t in types]
    + ['train s', 'words/s', 'wall s']
  )
  cells = []
  for r in rows:
    change = '' if r['delta'] is None else f'{r["delta"]:+.2f}'
    beyond = '' if r['exceeds'] is None else ('yes' if r['exceeds'] else 'no')
    row = [r['path'], r['label'], render.mean_std(r['dev']), change, beyond]
    if has_pr:
      row += [f'{np.mean(r[k]):.2f}' for k in ('precision', 'recall')]
    row += [render.mean_std(r[k]) if r.get(k) else '' for k, _ in extra]
    if has_test:
      row.append(render.mean_std(r['test']) if r['test'] else '')
    row += [f'{r["per_type"].get(t, float("nan")):.2f}' for t in types]
    row += [
      f'{r["train_seconds"]:.0f}',
      f'{r["words_per_sec"]:,.0f}',
      f'{r["wall_seconds"]:.0f}',
    ]
    cells.append(row)
  return headers, cells


def csv_table(rows):
  """(headers, rows) of results.csv: the table's columns as numbers only
  (a blank where there is none; beyond_spread 1 or 0)."""
  has_test = any(r['test'] is not None for r in rows)
  types = sorted({t for r in rows for t in r['per_type']})
  headers = ['path', 'row', 'seeds', 'dev_f1_mean', 'dev_f1_std', 'change']
  headers += ['beyond_spread']
  extra = [k for k, _ in GENERALIZATION if _optional(rows, k)]
  for key in extra:
    headers += [f'{key}_f1_mean', f'{key}_f1_std']
  if has_test:
    headers += ['test_f1_mean', 'test_f1_std']
  headers += [f'{t}_f1' for t in types]
  headers += ['train_seconds', 'words_per_sec', 'wall_seconds']

  def num(x, digits=4):
    return '' if x is None else round(float(x), digits)

  out = []
  for r in rows:
    row = [r['path'], r['label'], len(r['dev'])]
    row += [num(np.mean(r['dev'])), num(np.std(r['dev'])), num(r['delta'])]
    row.append('' if r['exceeds'] is None else int(r['exceeds']))
    for key in extra:
      values = r.get(key) or None
      row += [num(values and np.mean(values)), num(values and np.std(values))]
    if has_test:
      test = r['test'] or None
      row += [
        num(test and np.mean(test)),
        num(test and np.std(test)),
      ]
    row += [num(r['per_type'].get(t)) for t in types]
    row += [
      num(r['train_seconds'], 2),
      num(r['words_per_sec'], 0),
      num(r['wall_seconds'], 2),
    ]
    out.append(row)
  return headers, out


def plot(rows, path):
  """Bars of each row's mean +- std over seeds: dev F1, and beside it each
  generalization measure the rows have (unseen, lowercased, cross-domain)."""
  panels = [('dev', 'dev entity F1 (%)')] + [
    (key, name) for key, name in GENERALIZATION if _optional(rows, key)
  ]
  fig, axes = render.figure(
    ncols=len(panels),
    width=7.5 if len(panels) == 1 else 3.6,
    height=0.35 * len(rows) + 1.5,
  )
  color = {'added': 'tab:blue', 'removed': 'tab:orange', 'beyond': 'tab:green'}
  colors = [color[r['path']] for r in rows][::-1]
  labels = [r['label'] for r in rows][::-1]
  for i, (ax, (key, name)) in enumerate(zip(axes, panels)):
    values = [r[key] or [np.nan] for r in rows][::-1]
    means = [np.mean(v) for v in values]
    ax.barh(
      range(len(rows)),
      means,
      xerr=[np.std(v) for v in values],
      color=colors,
      capsize=3,
    )
    ax.set_yticks(range(len(rows)), labels if i == 0 else [], fontsize=8)
    if key in ('dev', 'unseen'):  # near the top: show the differences
      ax.set_xlim(np.nanmin(means) - 2, np.nanmax(means) + 1)
    ax.set_xlabel(f'{name}, mean +- std', fontsize=8)
    ax.grid(alpha=0.3, axis='x')
  fig.suptitle(
    'added one at a time (blue), removed from the full (orange), beyond it '
    '(green)',
    fontsize=9,
  )
  return render.save(fig, path)


def generalization_changes(rows):
  """'row: measure +x.xx, ...' for each row whose unseen, lowercased or
  cross-domain F1 moved beyond the seeds' spread from its reference."""
  names = dict(GENERALIZATION)
  out = []
  for r in rows:
    moved = [
      f'{names[k]} {delta:+.2f}'
      for k, (delta, exceeds) in r.get('changes', {}).items()
      if exceeds
    ]
    if moved:
      out.append(f'{r["label"]}: {", ".join(moved)}')
  return out


def write_outputs(workdir, results, *, data_dir, seeds):
  """Writes the outputs; returns the markdown table."""
  rows = study.summarize(results)
  headers, cells = table(rows)
  workdir_lib.write_json(
    workdir / 'results.json', {'results': results, 'rows': rows}
  )
  render.write_csv(workdir / 'results.csv', *csv_table(rows))
  png = plot(rows, workdir / 'ablation.png')
  md = render.markdown_table(headers, cells)
  gains = [r['label'] for r in rows if r['exceeds']]
  within = [r['label'] for r in rows if r['exceeds'] is False]
  prose = (
    f'Data: `{render.shown_path(data_dir)}`; {len(seeds)} seeds per row '
    f'({", ".join(map(str, seeds))}). '
    'Each "added" (and "beyond") row changes one thing from the row above '
    'it; each "removed" row takes one thing out of the full model (the last '
    'added row). "change" is the difference of mean dev F1 from that '
    'reference row; it is beyond the spread when it is larger than the '
    "larger of the two rows' ranges over seeds (max - min). dev P and R are "
    'the mean precision and recall; "dev unseen F1" scores only the dev '
    'entities whose string is no training entity (and the predictions whose '
    'string is none; research/evaluation/novelty.py); "lowercased dev F1" '
    'scores dev with every word lowercased (casing that such text does not '
    'break); '
    '"cross-domain F1" is the F1 of the model on another corpus of the same '
    'types, tagged as `evaluate` does (entry point flag --cross_data). Times '
    'are per run: training '
    '(the compiled steps), and wall (data preparation excluded; evaluation, '
    'compilation and both passes of document context included). '
    + render.F1_DEFINITION
  )
  verdict = (
    f'Beyond the spread: {"; ".join(gains) or "none"}. '
    f'Within it: {"; ".join(within) or "none"}.'
  )
  if moved := generalization_changes(rows):
    verdict += (
      '\n\nChanges of the generalization measures beyond the spread: '
      + '; '.join(moved)
      + '.'
    )
  render.write_report(
    workdir / 'report.md',
    'Ablation: what each part adds',
    [
      ('Rows', f'{prose}\n\n{md}\n\n{verdict}'),
      ('Plot', f'![ablation]({png})'),
    ],
  )
  return md
