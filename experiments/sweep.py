r"""Objective x L2 sweep: cross-entropy vs multiclass max-margin.

  ./launch.sh                       (this sweep on the shipped WikiGold)
  ./launch.sh sweep --data_dir=../shared/data/conll2003 --workdir=runs/sweep

For each objective, the grid of L2 strengths x seeds is trained as one
vmapped program (--vmap; --novmap trains the configurations one by one).
Reports, per cell, dev (and test) entity F1 as mean +- std over seeds, the
final training loss and the weight norm, and marks the best L2 per objective.
Writes into --workdir: flags.txt, results.json (every configuration with its
learning curve), results.csv, report.md, f1_vs_l2.png, learning_curves.png.
"""

import time

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from experiments import common
from experiments import reporting
from research import losses
from research import model as model_lib
from research import pipeline
from research import train as train_lib
from research import workdir as workdir_lib

_OBJECTIVES = flags.DEFINE_multi_enum(
    'objectives', ['xent', 'max_margin'], list(losses.OBJECTIVES),
    'Objectives to compare.')
_L2S = flags.DEFINE_list('l2s', ['0', '1e-6', '1e-5', '1e-4', '1e-3'],
                         'L2 strengths lambda.')
_SEEDS = flags.DEFINE_list(
    'seeds', ['0', '1', '2'], 'Seeds per cell: each picks the initialization '
    'of the layers and the shuffling; word vectors start from the same L.')
_VMAP = flags.DEFINE_bool('vmap', True, 'Train each objective\'s grid as one '
                          'vmapped program.')


def _evaluate_all(ds, model_cfg, objective, num, stacked):
  """fn(params) -> {'dev': [num scores], 'train': [num scores]}; params
  carry a leading axis of num configurations when `stacked`."""
  def evaluate(params):
    rows = {'dev': [], 'train': []}
    for i in range(num):
      p = train_lib.unstack(params, i) if stacked else params
      rows['dev'].append(pipeline.evaluate(p, ds, 'dev', model_cfg, objective))
      rows['train'].append(pipeline.evaluate(p, ds, 'train_sample', model_cfg,
                                             objective))
    return rows
  return evaluate


def run_grid(ds, model_cfg, cfg, l2s, seeds, epochs, vmap=True, log=print):
  """Trains every (l2, seed) of one objective; returns per-config results."""
  grid = [(l2, s) for l2 in l2s for s in seeds]
  S = len(grid)
  lr = common.LR.value
  init = [model_lib.init_params(jax.random.key(s), model_cfg,
                                vocab_size=len(ds.vocab),
                                num_classes=len(ds.tags),
                                embeddings=ds.L_init) for _, s in grid]
  t0 = time.perf_counter()
  if vmap:
    params = jax.tree.map(lambda *a: jnp.stack(a), *init)
    hyper = train_lib.Hyper(np.full(S, lr), np.array([l2 for l2, _ in grid]))
    params, history, stats = train_lib.fit(
        params, ds.windows['train'], hyper, model_cfg, cfg, epochs=epochs,
        seed=[s for _, s in grid],
        evaluate=_evaluate_all(ds, model_cfg, cfg.objective, S, True),
        log=log)
    finals = [train_lib.unstack(params, i) for i in range(S)]
    curves = [[{'step': h['step'], 'train_loss': h['train_loss'][i],
                'dev': h['dev'][i], 'train': h['train'][i]} for h in history]
              for i in range(S)]
    stats_all = [stats] * S
  else:
    finals, curves, stats_all = [], [], []
    for (l2, s), p in zip(grid, init):
      p, history, stats = train_lib.fit(
          p, ds.windows['train'], train_lib.Hyper(lr, l2), model_cfg, cfg,
          epochs=epochs, seed=s,
          evaluate=_evaluate_all(ds, model_cfg, cfg.objective, 1, False),
          log=log)
      finals.append(p)
      curves.append([{'step': h['step'], 'train_loss': h['train_loss'],
                      'dev': h['dev'][0], 'train': h['train'][0]}
                     for h in history])
      stats_all.append(stats)
  seconds = time.perf_counter() - t0
  results = []
  for i, (l2, s) in enumerate(grid):
    r = {'objective': cfg.objective, 'l2': l2, 'seed': s,
         'dev': curves[i][-1]['dev'],
         'final_train_loss': curves[i][-1]['train_loss'],
         'weight_norm': train_lib.weight_norm(finals[i]),
         'curve': [{'step': c['step'], 'train_loss': c['train_loss'],
                    'dev_f1': c['dev']['f1'], 'dev_loss': c['dev']['loss'],
                    'train_f1': c['train']['f1'],
                    'train_eval_loss': c['train']['loss']}
                   for c in curves[i]]}
    if 'test' in ds.splits:
      r['test'] = pipeline.evaluate(finals[i], ds, 'test', model_cfg,
                                    cfg.objective)
    results.append(r)
  timing = {'objective': cfg.objective, 'configs': S, 'vmap': vmap,
            'seconds': seconds,
            'train_windows_per_sec': float(np.mean(
                [st['train_windows_per_sec'] for st in stats_all])),
            'compile_seconds': float(sum(
                st['compile_seconds'] for st in (stats_all[:1] if vmap
                                                 else stats_all)))}
  return results, timing


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
    row = [obj, f'{l2:g}' + (' *' if best[obj][0] == l2 else ''),
           reporting.mean_std([r['dev']['f1'] for r in rs])]
    if has_test:
      row.append(reporting.mean_std([r['test']['f1'] for r in rs]))
    row += [reporting.mean_std([r['final_train_loss'] for r in rs], '{:.4f}'),
            reporting.mean_std([r['weight_norm'] for r in rs], '{:.1f}')]
    rows.append(row)
  headers = ['objective', 'L2', 'dev F1'] + (['test F1'] if has_test else []) + [
      'train loss', 'weight norm']
  return headers, rows, best


def plot_f1_vs_l2(results, path):
  fig, (ax,) = reporting.figure()
  for obj in dict.fromkeys(r['objective'] for r in results):
    l2s = sorted({r['l2'] for r in results if r['objective'] == obj})
    f1 = [[r['dev']['f1'] for r in results
           if r['objective'] == obj and r['l2'] == l2] for l2 in l2s]
    ax.errorbar(l2s, [np.mean(v) for v in f1], yerr=[np.std(v) for v in f1],
                marker='o', capsize=3, label=obj)
  positive = [r['l2'] for r in results if r['l2'] > 0]
  ax.set_xscale('symlog', linthresh=min(positive) if positive else 1e-6)
  ax.set_xlabel('L2 strength lambda (symlog; 0 at the left)')
  ax.set_ylabel('dev entity F1 (%)')
  ax.set_title('dev F1 vs L2, mean +- std over seeds')
  ax.legend()
  ax.grid(alpha=0.3)
  return reporting.save(fig, path)


def plot_learning_curves(results, path):
  """Train vs dev error (100 - entity F1) over steps, weakest/strongest L2."""
  objectives = list(dict.fromkeys(r['objective'] for r in results))
  fig, axes = reporting.figure(len(objectives))
  for ax, obj in zip(axes, objectives):
    l2s = sorted({r['l2'] for r in results if r['objective'] == obj})
    for l2, style in ((l2s[0], '-'), (l2s[-1], '--')):
      rs = [r for r in results if r['objective'] == obj and r['l2'] == l2]
      steps = [c['step'] for c in rs[0]['curve']]
      for key, color, name in (('train_f1', 'tab:blue', 'train'),
                               ('dev_f1', 'tab:red', 'dev')):
        err = 100 - np.mean([[c[key] for c in r['curve']] for r in rs], 0)
        ax.plot(steps, err, style, color=color,
                label=f'{name} error, L2={l2:g}')
    ax.set_xlabel('training step')
    ax.set_ylabel('error = 100 - entity F1 (%)')
    ax.set_title(obj)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
  return reporting.save(fig, path)


def main(_):
  workdir = common.workdir('sweep')
  l2s = common.parse_list(_L2S.value, float, 'l2s')
  seeds = common.parse_list(_SEEDS.value, int, 'seeds')
  log = common.log
  ds = common.load_dataset()
  common.check_batch_size(ds)
  model_cfg = common.model_config()
  common.save_flags(workdir)
  results, timings = [], []
  for objective in _OBJECTIVES.value:
    cfg = common.train_config(objective=objective)
    log(f'== {objective}: {len(l2s)} L2 strengths x {len(seeds)} seeds'
        f'{" as one vmapped program" if _VMAP.value else ""}')
    rs, timing = run_grid(ds, model_cfg, cfg, l2s, seeds, common.EPOCHS.value,
                          _VMAP.value, log)
    results += rs
    timings.append(timing)
    log(f'   {timing["configs"]} configurations in {timing["seconds"]:.1f}s '
        f'({timing["train_windows_per_sec"]:,.0f} windows/s)')
  has_test = 'test' in ds.splits
  headers, rows, best = summarize(results, has_test)
  workdir_lib.write_json(workdir / 'results.json',
                         {'results': results, 'timings': timings,
                          'best_l2': {o: b[0] for o, b in best.items()}})
  reporting.write_csv(workdir / 'results.csv', headers, rows)
  f1_png = plot_f1_vs_l2(results, workdir / 'f1_vs_l2.png')
  lc_png = plot_learning_curves(results, workdir / 'learning_curves.png')
  table = reporting.markdown_table(headers, rows)
  timing_rows = [[t['objective'], t['configs'], 'yes' if t['vmap'] else 'no',
                  f'{t["seconds"]:.1f}', f'{t["train_windows_per_sec"]:,.0f}']
                 for t in timings]
  reporting.write_report(workdir / 'report.md', 'Objective x L2 sweep', [
      ('Setup', f'data `{common.DATA_DIR.value}`, model {model_cfg.model} '
                f'(g={model_cfg.nonlinearity}, H={model_cfg.hidden}, '
                f'k={model_cfg.window}), {common.OPTIMIZER.value} lr '
                f'{common.LR.value:g}, batch {common.BATCH_SIZE.value}, '
                f'{common.EPOCHS.value} epochs, seeds {seeds}. L2 covers '
                'the weight matrices'
                f'{", word vectors" if common.L2_EMBEDDINGS.value else ""}'
                f'{", biases" if common.L2_BIASES.value else ""}. '
                'F1 is conlleval entity F1 (%), mean +- std over seeds; '
                '* marks the best L2 per objective by mean dev F1.'),
      ('Results', table),
      ('Dev F1 vs L2', f'![]({f1_png})'),
      ('Learning curves (weakest and strongest L2)', f'![]({lc_png})'),
      ('Time', reporting.markdown_table(
          ['objective', 'configurations', 'vmapped', 'seconds',
           'windows/s'], timing_rows)),
  ])
  log('')
  log(table)
  log(f'wrote {workdir}/report.md')


if __name__ == '__main__':
  common.run(main)
