"""Objective x L2 sweep: cross-entropy vs multiclass max-margin.

For each objective, the grid of L2 strengths x seeds is trained as one
stacked program (`vmap=True`, `engine.fit` with S = L2s x seeds) or one
configuration at a time. Per cell: dev (and test) entity F1 as mean +- std
over seeds, the final training loss and the weight norm, and the best L2 per
objective by mean dev F1.
"""

import time

import numpy as np

from research import classifier
from research import engine
from research import ner
from research import render


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
  init = [ner.init_params(ds, model_cfg, s) for _, s in grid]
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
