"""Objective x L2 sweep: cross-entropy vs multiclass max-margin (and the
sentence-level CRF and structured margin).

For each objective, the grid of L2 strengths x seeds is trained as one
stacked program (`vmap=True`, `training.fit_stack` with S = L2s x seeds) or one
configuration at a time. Per cell: dev (and test) entity F1 as mean +- std
over seeds, the final training loss and the weight norm, and the best L2 per
objective by mean dev F1.

Every objective trains on the same examples: shuffled windows for the decks'
window model, whole sentences (research.training.sequence) when any objective or
the data asks for them (a sentence-level objective, features, IOBES, Viterbi
decoding). With the document feature, the first pass is trained once (with the
first objective) and every configuration reads its tags. The parameters scored
are the final ones."""

import time

import numpy as np

from research import setup as setup_lib
from research.evaluation import scoring
from research.reports import render
from research.training import classifier
from research.training import engine
from research.training import events as events_lib
from research.training import facade as training


def _train(setup, grid, lr, epochs, log, ckpt, events_dir):
  """One training.fit_stack of the configurations `grid` [(l2, seed)];
  returns (final params, learning curves, stats), one of each per
  configuration."""
  S = len(grid)
  fitted = training.fit_stack(
    setup,
    engine.Hyper(np.full(S, lr), np.array([l2 for l2, _ in grid])),
    [s for _, s in grid],
    epochs=epochs,
    eval_train=True,
    checkpoint=ckpt,
    events=events_dir
    and (
      events_dir,
      [events_lib.stream_name(setup.objective.name, l2, s) for l2, s in grid],
    ),
    log=log,
    stop_on_divergence=False,  # reported per configuration instead
  )
  finals = [engine.unstack(fitted.params, i) for i in range(S)]
  curves = [
    [
      {
        'step': h['step'],
        'train_loss': h['train_loss'][i],
        'dev': h['dev'][i],
        'train': h['train'][i],
      }
      for h in fitted.history
    ]
    for i in range(S)
  ]
  stats = fitted.stats
  per_config = [
    dict(stats, diverged_at=stats['diverged_at'][i]) for i in range(S)
  ]
  return finals, curves, per_config


def _result(setup, config, final, curve, stats):
  """One configuration's result: its scores, loss, norm and curve."""
  l2, seed = config
  r = {
    'objective': setup.objective.name,
    'l2': l2,
    'seed': seed,
    'dev': curve[-1]['dev'],
    'final_train_loss': curve[-1]['train_loss'],
    'diverged_at_step': stats['diverged_at'],
    'weight_norm': classifier.weight_norm(final),
    'curve': [
      {
        'step': c['step'],
        'train_loss': c['train_loss'],
        'dev_f1': c['dev']['f1'],
        'dev_loss': c['dev'].get('loss'),
        'train_f1': c['train']['f1'],
        'train_eval_loss': c['train'].get('loss'),
      }
      for c in curve
    ],
  }
  if 'test' in setup.ds.splits:
    r['test'] = scoring.evaluate(setup, final, 'test')
  return r


def run_grid(
  setup, l2s, seeds, *, lr, epochs, vmap=True, log=print, checkpoint=None,
  events_dir=None,
):  # fmt: skip
  """Trains every (l2, seed) of one objective (a research.setup.Setup),
  checkpointing into checkpoint's child named by the objective (and the
  configuration's index without vmap).

  Returns:
    (results, timing): one result dict per configuration (objective, l2,
    seed, dev and test scores, final_train_loss, weight_norm, curve), and
    the objective's time and throughput.
  """
  grid = [(l2, s) for l2 in l2s for s in seeds]
  t0 = time.perf_counter()
  name = setup.objective.name
  ckpt = checkpoint and checkpoint.child(name)
  if vmap:
    finals, curves, stats_all = _train(
      setup, grid, lr, epochs, log, ckpt, events_dir
    )
  else:
    finals, curves, stats_all = [], [], []
    for i, config in enumerate(grid):
      one = ckpt and ckpt.child(str(i))
      f, c, st = _train(setup, [config], lr, epochs, log, one, events_dir)
      finals += f
      curves += c
      stats_all += st
  seconds = time.perf_counter() - t0
  results = [
    _result(setup, config, final, curve, st)
    for config, final, curve, st in zip(grid, finals, curves, stats_all)
  ]
  timing = {
    'objective': name,
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
  decode='argmax',
  document=False,
  checkpoint=None,
  events_dir=None,
):
  """The sweep: `run_grid` for each objective (cfg.objective is replaced), each
  checkpointing into its child of `checkpoint` (a
  research.training.checkpoint.Checkpointer, or None) and writing one
  TensorBoard stream per configuration into `events_dir` (when given). With
  `document`, ds is first given document context
  (training.document_context), once, with the first objective.

  Returns:
    {'results': [...], 'timings': [...], 'best_l2': {objective: l2},
    'trained_on': 'sentences' or 'windows', 'decode', and 'first_pass'
    (the summary of two_passes.prepare) with the document feature}.
  """
  out = {}
  if document:
    log(f'document context: the first pass, once ({objectives[0]})')
    first_setup = setup_lib.resolve(
      ds, model_cfg, cfg._replace(objective=objectives[0]), decode
    )
    first_setup, first = training.document_context(
      first_setup, engine.Hyper(lr, 0.0), epochs=epochs, seed=seeds[0],
      select='last', checkpoint=checkpoint, log=log,
    )  # fmt: skip
    ds = first_setup.ds
    out['first_pass'] = first.summary
  setups = [
    setup_lib.resolve(ds, model_cfg, cfg._replace(objective=o), decode)
    for o in objectives
  ]
  # Every objective trains on the same examples: sentences when any asks.
  sentences = any(s.sentences for s in setups)
  if sentences:
    setups = [s.on_sentences() for s in setups]
  results, timings = [], []
  for objective, setup in zip(objectives, setups, strict=True):
    log(
      f'== {objective}: {len(l2s)} L2 strengths x {len(seeds)} seeds'
      f'{" as one program" if vmap else ""}'
    )
    rs, timing = run_grid(
      setup, l2s, seeds, lr=lr, epochs=epochs, vmap=vmap, log=log,
      checkpoint=checkpoint, events_dir=events_dir,
    )  # fmt: skip
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
    'trained_on': 'sentences' if sentences else 'windows',
    'decode': decode,
    **out,
  }


def summarize(results, has_test):
  """One row per (objective, l2) with mean +- std over seeds; best marked."""
  cells = {}
  for r in results:
    cells.setdefault((r['objective'], r['l2']), []).append(r)
  best = {}
  for (obj, l2), rs in cells.items():
    if any(r.get('diverged_at_step') for r in rs):
      continue  # never the best
    f1 = np.mean([r['dev']['f1'] for r in rs])
    if obj not in best or f1 > best[obj][1]:
      best[obj] = (l2, f1)
  rows = []
  for (obj, l2), rs in cells.items():
    gone = [r['diverged_at_step'] for r in rs if r.get('diverged_at_step')]
    if gone:
      rows.append(
        [
          obj,
          f'{l2:g}',
          f'diverged ({len(gone)} of {len(rs)} seeds, from step {min(gone)})',
        ]
        + ['-'] * (4 if has_test else 3)
      )
      continue
    row = [
      obj,
      f'{l2:g}' + (' *' if best.get(obj, (None,))[0] == l2 else ''),
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
