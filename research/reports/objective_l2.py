"""The objective x L2 sweep's report: CSV, plots, report.md.

The sweep is research/studies/objective_l2.py; this module renders what its
`run` returned.
"""

import numpy as np

from research import workdir as workdir_lib
from research.reports import render
from research.studies import objective_l2 as study


def plot_f1_vs_l2(results, path):
  fig, (ax,) = render.figure()
  for obj in dict.fromkeys(r['objective'] for r in results):
    l2s = sorted({r['l2'] for r in results if r['objective'] == obj})
    f1 = [
      [
        r['dev']['f1']
        for r in results
        if r['objective'] == obj and r['l2'] == l2
      ]
      for l2 in l2s
    ]
    ax.errorbar(
      l2s,
      [np.mean(v) for v in f1],
      yerr=[np.std(v) for v in f1],
      marker='o',
      capsize=3,
      label=obj,
    )
  positive = [r['l2'] for r in results if r['l2'] > 0]
  ax.set_xscale('symlog', linthresh=min(positive) if positive else 1e-6)
  ax.set_xlabel('L2 strength lambda (symlog; 0 at the left)')
  ax.set_ylabel('dev entity F1 (%)')
  ax.set_title('dev F1 vs L2, mean +- std over seeds')
  ax.legend()
  ax.grid(alpha=0.3)
  return render.save(fig, path)


def plot_learning_curves(results, path):
  """Train vs dev error (100 - entity F1) over steps, weakest/strongest L2."""
  objectives = list(dict.fromkeys(r['objective'] for r in results))
  fig, axes = render.figure(len(objectives))
  for ax, obj in zip(axes, objectives):
    l2s = sorted({r['l2'] for r in results if r['objective'] == obj})
    for l2, style in ((l2s[0], '-'), (l2s[-1], '--')):
      rs = [r for r in results if r['objective'] == obj and r['l2'] == l2]
      steps = [c['step'] for c in rs[0]['curve']]
      for key, color, name in (
        ('train_f1', 'tab:blue', 'train'),
        ('dev_f1', 'tab:red', 'dev'),
      ):
        err = 100 - np.mean([[c[key] for c in r['curve']] for r in rs], 0)
        ax.plot(
          steps,
          err,
          style,
          color=color,
          label=f'{name} error, L2={l2:g}',
          **render.points(len(steps)),
        )
    ax.set_xlabel('training step')
    ax.set_ylabel('error = 100 - entity F1 (%)')
    ax.set_title(obj)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
  return render.save(fig, path)


def csv_table(results, best, has_test):
  """(headers, rows) of results.csv: one row per (objective, L2), numbers
  only (a blank where there is none): means and stds over seeds, the seeds
  that diverged, and best (1 for the best L2 of its objective by mean dev F1,
  else 0)."""
  keys = [('dev_f1', ('dev', 'f1'))]
  if has_test:
    keys.append(('test_f1', ('test', 'f1')))
  keys += [
    ('train_loss', ('final_train_loss',)),
    ('weight_norm', ('weight_norm',)),
  ]
  headers = ['objective', 'l2', 'seeds', 'diverged_seeds', 'best']
  headers += [f'{name}_{m}' for name, _ in keys for m in ('mean', 'std')]
  cells = {}
  for r in results:
    cells.setdefault((r['objective'], r['l2']), []).append(r)
  rows = []
  for (obj, l2), rs in cells.items():
    diverged = sum(bool(r.get('diverged_at_step')) for r in rs)
    row = [obj, l2, len(rs), diverged, int(best.get(obj, (None,))[0] == l2)]
    for _, path in keys:
      if diverged:
        row += ['', '']
        continue
      values = [_get(r, path) for r in rs]
      row += [round(float(np.mean(values)), 6), round(float(np.std(values)), 6)]
    rows.append(row)
  return headers, rows


def _get(d, path):
  for key in path:
    d = d[key]
  return d


def _machine(backend):
  """'; on <device> ...' of results.json's backend (sweeps since it was
  recorded)."""
  if not backend:
    return ''
  return (
    f'; on {backend["device"]} ({backend["platform"]}), jax '
    f'{backend["jax"]}, matmul precision {backend["matmul_precision"]}'
  )


def write_outputs(
  workdir, sweep, *, data_dir, model_cfg, cfg, lr, epochs, seeds, has_test
):
  """results.json, results.csv, f1_vs_l2.png, learning_curves.png and
  report.md; returns the results table (markdown)."""
  results, timings = sweep['results'], sweep['timings']
  headers, rows, best = study.summarize(results, has_test)
  workdir_lib.write_json(workdir / 'results.json', sweep)
  render.write_csv(workdir / 'results.csv', *csv_table(results, best, has_test))
  f1_png = plot_f1_vs_l2(results, workdir / 'f1_vs_l2.png')
  lc_png = plot_learning_curves(results, workdir / 'learning_curves.png')
  table = render.markdown_table(headers, rows)
  timing_rows = [
    [
      t['objective'],
      t['configs'],
      'yes' if t['vmap'] else 'no',
      f'{t["seconds"]:.1f}',
      f'{t["train_windows_per_sec"]:,.0f}',
    ]
    for t in timings
  ]
  covers = ''.join(
    [
      ', word vectors' if cfg.l2_embeddings else '',
      ', biases' if cfg.l2_biases else '',
    ]
  )
  render.write_report(
    workdir / 'report.md',
    'Objective x L2 sweep',
    [
      (
        'Setup',
        f'data `{render.shown_path(data_dir)}`, model {model_cfg.model} '
        f'(g={model_cfg.nonlinearity}, H={model_cfg.hidden}, '
        f'k={model_cfg.window}), {cfg.optimizer} lr {lr:g}, batch '
        f'{cfg.batch_size}, {epochs} epochs, seeds {seeds}, dropout '
        f'{model_cfg.dropout:g}, word vectors '
        f'{"frozen" if cfg.freeze_embeddings else "fine-tuned"}; trained on '
        f'{sweep.get("trained_on", "windows")}, decoded by '
        f'{sweep.get("decode", "argmax")}'
        + (
          '; the document feature reads one first pass, trained once'
          if 'first_pass' in sweep
          else ''
        )
        + _machine(sweep.get('backend'))
        + f' (all flags: flags.txt). L2 covers the weight matrices{covers}. '
        + render.F1_DEFINITION
        + ' Mean +- std over seeds; * marks the best L2 per objective '
        'by mean dev F1.',
      ),
      ('Results', table),
      ('Dev F1 vs L2', f'![]({f1_png})'),
      ('Learning curves (weakest and strongest L2)', f'![]({lc_png})'),
      (
        'Time',
        render.markdown_table(
          [
            'objective',
            'configurations',
            'one program',
            'seconds',
            'windows/s',
          ],
          timing_rows,
        ),
      ),
    ],
  )
  return table
