"""Objective x L2 sweep: cross-entropy vs multiclass max-margin.

For each objective, the grid of L2 strengths x seeds is trained as one
stacked program (`vmap=True`, `engine.fit` with S = L2s x seeds) or one
configuration at a time. Per cell: dev (and test) entity F1 as mean +- std
over seeds, the final training loss and the weight norm, and the best L2 per
objective by mean dev F1.
"""

import time

import jax
import numpy as np

from research import classifier
from research import engine
from research import model as model_lib
from research import ner
from research import render
from research import workdir as workdir_lib


def _evaluate_all(ds, model_cfg, objective, num):
  """fn(stacked params) -> {'dev': [num scores], 'train': [num scores]}."""

  def evaluate(params):
    rows = {'dev': [], 'train': []}
    for i in range(num):
      p = engine.unstack(params, i)
      rows['dev'].append(ner.evaluate(p, ds, 'dev', model_cfg, objective))
      rows['train'].append(
        ner.evaluate(p, ds, 'train_sample', model_cfg, objective)
      )
    return rows

  return evaluate


def _train(ds, model_cfg, cfg, grid, init, lr, epochs, log):
  """One engine.fit of the configurations `grid` [(l2, seed)]; returns
  (final params, learning curves, stats), one of each per configuration."""
  S = len(grid)
  params, history, stats = classifier.fit(
    engine.stack(init),
    ds.windows['train'],
    engine.Hyper(np.full(S, lr), np.array([l2 for l2, _ in grid])),
    [s for _, s in grid],
    model_cfg,
    cfg,
    epochs=epochs,
    evaluate=_evaluate_all(ds, model_cfg, cfg.objective, S),
    log=log,
  )
  finals = [engine.unstack(params, i) for i in range(S)]
  curves = [
    [
      {
        'step': h['step'],
        'train_loss': h['train_loss'][i],
        'dev': h['dev'][i],
        'train': h['train'][i],
      }
      for h in history
    ]
    for i in range(S)
  ]
  return finals, curves, [stats] * S


def run_grid(
  ds, model_cfg, cfg, l2s, seeds, *, lr, epochs, vmap=True, log=print
):
  """Trains every (l2, seed) of one objective.

  Returns:
    (results, timing): one result dict per configuration (objective, l2,
    seed, dev and test scores, final_train_loss, weight_norm, curve), and
    the objective's time and throughput.
  """
  grid = [(l2, s) for l2 in l2s for s in seeds]
  init = [
    model_lib.init_params(
      jax.random.key(s),
      model_cfg,
      vocab_size=len(ds.vocab),
      num_classes=len(ds.tags),
      embeddings=ds.L_init,
    )
    for _, s in grid
  ]
  t0 = time.perf_counter()
  if vmap:
    finals, curves, stats_all = _train(
      ds, model_cfg, cfg, grid, init, lr, epochs, log
    )
  else:
    finals, curves, stats_all = [], [], []
    for config, p in zip(grid, init):
      f, c, st = _train(ds, model_cfg, cfg, [config], [p], lr, epochs, log)
      finals += f
      curves += c
      stats_all += st
  seconds = time.perf_counter() - t0
  results = []
  for i, (l2, s) in enumerate(grid):
    r = {
      'objective': cfg.objective,
      'l2': l2,
      'seed': s,
      'dev': curves[i][-1]['dev'],
      'final_train_loss': curves[i][-1]['train_loss'],
      'weight_norm': classifier.weight_norm(finals[i]),
      'curve': [
        {
          'step': c['step'],
          'train_loss': c['train_loss'],
          'dev_f1': c['dev']['f1'],
          'dev_loss': c['dev']['loss'],
          'train_f1': c['train']['f1'],
          'train_eval_loss': c['train']['loss'],
        }
        for c in curves[i]
      ],
    }
    if 'test' in ds.splits:
      r['test'] = ner.evaluate(finals[i], ds, 'test', model_cfg, cfg.objective)
    results.append(r)
  timing = {
    'objective': cfg.objective,
    'configs': len(grid),
    'vmap': vmap,
    'seconds': seconds,
    'train_windows_per_sec': float(
      np.mean([st['train_windows_per_sec'] for st in stats_all])
    ),
    'compile_seconds': float(
      sum(
        st['compile_seconds'] for st in (stats_all[:1] if vmap else stats_all)
      )
    ),
  }
  return results, timing


def run(
  ds,
  model_cfg,
  cfg,
  objectives,
  l2s,
  seeds,
  *,
  lr,
  epochs,
  vmap=True,
  log=print,
):
  """The sweep: `run_grid` for each objective (cfg.objective is replaced).

  Returns:
    {'results': [...], 'timings': [...], 'best_l2': {objective: l2}}.
  """
  results, timings = [], []
  for objective in objectives:
    log(
      f'== {objective}: {len(l2s)} L2 strengths x {len(seeds)} seeds'
      f'{" as one vmapped program" if vmap else ""}'
    )
    rs, timing = run_grid(
      ds,
      model_cfg,
      cfg._replace(objective=objective),
      l2s,
      seeds,
      lr=lr,
      epochs=epochs,
      vmap=vmap,
      log=log,
    )
    results += rs
    timings.append(timing)
    log(
      f'   {timing["configs"]} configurations in {timing["seconds"]:.1f}s '
      f'({timing["train_windows_per_sec"]:,.0f} windows/s)'
    )
  _, _, best = summarize(results, 'test' in ds.splits)
  return {
    'results': results,
    'timings': timings,
    'best_l2': {o: b[0] for o, b in best.items()},
  }


def summarize(results, has_test):
  """One row per (objective, l2) with mean +- std over seeds; best marked."""
  cells = {}
  for r in results:
    cells.setdefault((r['objective'], r['l2']), []).append(r)
  best = {}
  for (obj, l2), rs in cells.items():
    f1 = np.mean([r['dev']['f1'] for r in rs])
    if obj not in best or f1 > best[obj][1]:
      best[obj] = (l2, f1)
  rows = []
  for (obj, l2), rs in cells.items():
    row = [
      obj,
      f'{l2:g}' + (' *' if best[obj][0] == l2 else ''),
      render.mean_std([r['dev']['f1'] for r in rs]),
    ]
    if has_test:
      row.append(render.mean_std([r['test']['f1'] for r in rs]))
    row += [
      render.mean_std([r['final_train_loss'] for r in rs], '{:.4f}'),
      render.mean_std([r['weight_norm'] for r in rs], '{:.1f}'),
    ]
    rows.append(row)
  headers = (
    ['objective', 'L2', 'dev F1']
    + (['test F1'] if has_test else [])
    + ['train loss', 'weight norm']
  )
  return headers, rows, best


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
          steps, err, style, color=color, label=f'{name} error, L2={l2:g}'
        )
    ax.set_xlabel('training step')
    ax.set_ylabel('error = 100 - entity F1 (%)')
    ax.set_title(obj)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
  return render.save(fig, path)


def write_outputs(
  workdir, sweep, *, data_dir, model_cfg, cfg, lr, epochs, seeds, has_test
):
  """results.json, results.csv, f1_vs_l2.png, learning_curves.png and
  report.md; returns the results table (markdown)."""
  results, timings = sweep['results'], sweep['timings']
  headers, rows, _ = summarize(results, has_test)
  workdir_lib.write_json(workdir / 'results.json', sweep)
  render.write_csv(workdir / 'results.csv', headers, rows)
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
        f'data `{data_dir}`, model {model_cfg.model} '
        f'(g={model_cfg.nonlinearity}, H={model_cfg.hidden}, '
        f'k={model_cfg.window}), {cfg.optimizer} lr {lr:g}, batch '
        f'{cfg.batch_size}, {epochs} epochs, seeds {seeds}. L2 covers '
        f'the weight matrices{covers}. '
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
          ['objective', 'configurations', 'vmapped', 'seconds', 'windows/s'],
          timing_rows,
        ),
      ),
    ],
  )
  return table
