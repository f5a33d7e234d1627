"""The window-margin study's report: table, CSV, plots, report.md.

The study (task, objectives, scores) is research/studies/margin_vs_logistic.py;
this module renders what its `run` returned.
"""

import numpy as np

from research import workdir as workdir_lib
from research.reports import render
from research.studies import margin_vs_logistic as study

COLORS = {'logistic': 'tab:gray'}
PALETTE = ('tab:blue', 'tab:orange', 'tab:green')


def _fmt(values, fmt='{:.1f}'):
  values = [v for v in values if v is not None]
  return render.mean_std(values, fmt) if values else '-'


def _table(results, labels, splits):
  """The report table: mean (± std over seeds) of each model's scores."""
  headers = ['model']
  for split in splits:
    headers += [f'{split} P', f'{split} R', f'{split} F1', f'{split} AP']
    headers.append('dev F1*' if split == 'dev' else f'{split} F1 (dev thr.)')
  headers += ['dev active hinges (corrupt / real)', 'windows/s']
  rows = []
  for label in labels:
    runs = [r for r in results['runs'] if r['label'] == label]
    row = [label]
    for split in splits:
      for key in ('precision', 'recall', 'f1', 'ap'):
        row.append(_fmt([r[split][key] for r in runs]))
      row.append(
        _fmt(
          [
            r['dev']['best_f1']
            if split == 'dev'
            else r[f'{split}_dev_threshold']['f1']
            for r in runs
          ]
        )
      )
    corrupt = _fmt([r['dev_hinge_corrupt']['active'] for r in runs], '{:.3f}')
    real = _fmt(
      [r.get('dev_hinge_real', {}).get('active') for r in runs], '{:.3f}'
    )
    row.append(f'{corrupt} / {real}')
    row.append(_fmt([r['windows_per_sec'] for r in runs], '{:,.0f}'))
    rows.append(row)
  return headers, rows


def _smooth(values, width):
  values = np.asarray(values, float)
  if width <= 1 or len(values) < width:
    return values
  kernel = np.ones(width) / width
  return np.convolve(values, kernel, mode='valid')


def _plots(workdir, results, labels):
  """active_hinges.png and dev_f1.png; returns their file names."""
  colors = {
    label: COLORS.get(label, PALETTE[i % len(PALETTE)])
    for i, label in enumerate(labels)
  }
  floor = 1e-3  # log axes: fractions below are drawn at the floor

  def clip(values):
    return np.maximum(np.asarray(values, float), floor)

  fig, (ax_train, ax_dev) = render.figure(ncols=2, width=6.0)
  for label in labels:
    for i, run in enumerate(r for r in results['runs'] if r['label'] == label):
      color = colors[label]
      lab = label if i == 0 else None
      active = np.asarray(run['train_active_per_step'], float)
      if run['config']['objective'] == 'margin' and len(active):
        width = max(1, len(active) // 100)
        smooth = _smooth(active, width)
        x = np.arange(len(smooth)) + (width + 1) / 2
        ax_train.plot(
          x,
          clip(smooth),
          color=color,
          label=lab,
          lw=1.2,
          **render.points(len(x)),
        )
      steps = [h['step'] for h in run['history']]
      ax_dev.plot(
        steps,
        clip([h['dev_hinge_corrupt']['active'] for h in run['history']]),
        'o-',
        color=color,
        ms=3,
        label=f'{label}: corrupt' if lab else None,
      )
      if 'dev_hinge_real' in run['history'][0]:
        ax_dev.plot(
          steps,
          clip([h['dev_hinge_real']['active'] for h in run['history']]),
          's--',
          color=color,
          ms=3,
          label=f'{label}: real negatives' if lab else None,
        )
  ax_train.set(
    title='training batches (margin runs, smoothed)',
    xlabel='step',
    ylabel='fraction of hinges 1 - s + s_c > 0',
  )
  ax_dev.set(
    title='dev: fixed (true, corrupt) / (true, real negative)',
    xlabel='step',
    ylabel='fraction active',
  )
  for ax in (ax_train, ax_dev):
    ax.set_yscale('log')
    ax.set_ylim(floor * 0.8, 1.2)
    ax.grid(True, which='major', alpha=0.3)
  ax_train.legend(fontsize=7)
  ax_dev.legend(fontsize=7, loc='upper left', bbox_to_anchor=(1.02, 1.0))
  hinge_png = render.save(fig, workdir / 'active_hinges.png')

  fig, (ax_f1, ax_ap) = render.figure(ncols=2)
  for label in labels:
    for i, run in enumerate(r for r in results['runs'] if r['label'] == label):
      steps = [h['step'] for h in run['history']]
      lab = label if i == 0 else None
      ax_f1.plot(
        steps,
        [h['dev']['f1'] for h in run['history']],
        'o-',
        color=colors[label],
        ms=3,
        label=lab,
      )
      ax_ap.plot(
        steps,
        [h['dev']['ap'] for h in run['history']],
        'o-',
        color=colors[label],
        ms=3,
        label=lab,
      )
  ax_f1.set(
    title='dev F1 at s > 0', xlabel='step', ylabel='F1 (%)', ylim=(0, 100)
  )
  ax_ap.set(
    title='dev average precision', xlabel='step', ylabel='AP (%)', ylim=(0, 100)
  )
  ax_f1.legend(fontsize=7)
  f1_png = render.save(fig, workdir / 'dev_f1.png')
  return hinge_png, f1_png


def _write_csv(path, results, splits):
  """results.csv: one row per run, numbers only."""
  csv_headers = ['model', 'objective', 'negatives', 'seed']
  for split in splits:
    csv_headers += [
      f'{split}_{k}' for k in ('precision', 'recall', 'f1', 'ap', 'best_f1')
    ]
  if 'test' in splits:
    csv_headers.append('test_f1_dev_threshold')
  csv_headers += [
    'dev_active_corrupt',
    'dev_active_real',
    'windows_per_sec',
    'train_seconds',
  ]
  csv_rows = []
  for r in results['runs']:
    row = [
      r['label'],
      r['config']['objective'],
      r['config']['negatives'] if r['config']['objective'] == 'margin' else '',
      r['seed'],
    ]
    for split in splits:
      row += [
        round(r[split][k], 4)
        for k in ('precision', 'recall', 'f1', 'ap', 'best_f1')
      ]
    if 'test' in splits:
      row.append(round(r['test_dev_threshold']['f1'], 4))
    real = r.get('dev_hinge_real', {}).get('active')
    row += [
      round(r['dev_hinge_corrupt']['active'], 4),
      '' if real is None else round(real, 4),
      round(r['windows_per_sec']),
      round(r['train_seconds'], 2),
    ]
    csv_rows.append(row)
  render.write_csv(path, csv_headers, csv_rows)


def write_outputs(workdir, results, arrays, st, *, data_dir, embeddings):
  """results.json, results.csv, report.md and the two plots; returns the
  results table (markdown)."""
  negatives, seeds = st.negatives, st.seeds
  labels = [label for label, _ in study.model_runs(negatives)]
  splits = [s for s in ('dev', 'test') if s in arrays]
  workdir_lib.write_json(workdir / 'results.json', results)

  _write_csv(workdir / 'results.csv', results, splits)
  hinge_png, f1_png = _plots(workdir, results, labels)
  hinge_text = f"""Fraction of hinges 1 - s + s_c > 0: left, in the training
batches of the margin runs (moving average); right, on the fixed dev pairs,
for every model. Log scale; fractions below 0.001 are drawn at 0.001.

![]({hinge_png})"""
  headers, rows = _table(results, labels, splits)
  table = render.markdown_table(headers, rows)
  T = results['entity_type']
  counts = ', '.join(
    f'{s} {int(a[2].sum()):,} of {len(a[2]):,}' for s, a in arrays.items()
  )
  rates = {s: arrays[s][2].mean() for s in splits}
  num_pos = int(arrays['train'][2].sum())
  passes = results['num_steps'] * st.batch_size / max(1, num_pos)
  everything = ', '.join(
    f'{s} P {100 * r:.1f}, F1 {200 * r / (1 + r):.1f}' for s, r in rates.items()
  )
  setup = f"""
Task: is the center word of a window an entity of type **{T}** (any tag
X-{T})? Windows with a {T} center: {counts}. Data `{data_dir}`,
vectors `{embeddings}`, window k={st.window}, word +
casing vectors, hidden {st.hidden} ({st.nonlinearity}),
{st.optimizer} lr {st.lr:g}, {results['num_steps']} steps
of {st.batch_size} true windows ({st.epochs} epochs of
{results['steps_per_epoch']} steps over all training windows; batches drawn
with replacement, so the margin runs, whose true windows are the
{num_pos:,} training {T} windows, see each about {passes:.0f} times), seeds
{', '.join(map(str, seeds))}. Every model is the scorer s = U . g(W x + b)
from the same initial parameters; only the objective differs:

- **margin (corrupt)**: the deck's objective. True windows are the {T}
  windows only; J = sum over M={st.num_corrupt} corrupt windows of
  max(0, 1 - s + s_c), a corrupt window being the true window with its center
  word replaced by a word drawn uniformly from the vocabulary (center casing:
  `{st.corrupt_casing}`). Real non-{T} windows are never seen in training.
- **margin (corrupt+real)** (negatives `corrupt+real`): the same, plus M
  real non-{T} training windows drawn uniformly as further s_c per true
  window.
- **logistic**: sigma(s) with the logistic loss on all training windows.

Detection is s > 0 for every model (for the logistic one this is
sigma(s) > 0.5). P/R/F1 are token level (one decision per window); calling
every window positive would score R 100 and {everything}. AP is the
average precision of the ranking by s (threshold-free); dev F1* is the F1 of
the best threshold on dev itself (an oracle, to tell ranking from
calibration), and test F1 (dev thr.) the test F1 at that dev threshold.
Active hinges: fraction of pairs with 1 - s + s_c > 0 on fixed dev pairs (each
dev {T} window with M corrupt windows, and with M real non-{T} dev windows),
for every model. windows/s counts every window scored in training, corrupt and
negative ones included.
"""
  render.write_report(
    workdir / 'report.md',
    f'Window max-margin vs logistic: {T} detection',
    [
      ('Setup', setup),
      ('Results', table),
      ('Active hinges', hinge_text),
      ('Dev F1 and AP during training', f'![]({f1_png})'),
    ],
  )
  return table
