"""Ablation: what each part of the strong model adds.

Two paths, each row trained with several seeds:

* added one at a time, from today's default (the decks' window classifier:
  cross-entropy on shuffled windows, argmax per word) to the full model;
* removed one at a time from the full model;
* beyond the full model, one after another: what the best configuration
  adds to the single model (an ensemble, a bias against O at decoding kept
  only when it beats the noise) and the wider context of windows of
  windows (research/formulas/dilated.py).

Besides dev F1, every row reports precision and recall, the F1 of the dev
entities whose string is not a training entity ('unseen', research/
novelty.py) and what the caller's `scorers` measure: the entry point's F1
on dev lowercased ('lowercased'), and given another corpus of the same
types, the F1 there ('cross': the model tags it as `evaluate` does).

A row is a `Setting`: every choice the rows vary, with the default's values
as defaults. Each row changes one thing from the row above it (or from the
full model). A gain counts when it exceeds the seeds' spread: the
difference of the two rows' mean dev F1 is larger than the larger of their
two ranges (max - min over seeds); with one seed there is no spread, and
no verdict.
"""

import time
from typing import NamedTuple

import numpy as np

from research import setup as setup_lib
from research.training import facade as training


class Setting(NamedTuple):
  """The choices the ablation varies (the rest comes from the caller)."""

  objective: str = 'xent'
  batch_size: int = 256
  epochs: int = 10
  tag_scheme: str = 'file'
  features: tuple = ()
  dropout: float = 0.0
  select: str = 'last'
  ensemble: int = 1
  decode: str = 'argmax'
  hidden: int = 300
  word_dropout: float = 0.0
  case_augment: float = 0.0
  tune_o_bias: bool = False
  nonlinearity: str = 'tanh'
  model: str = 'hidden'


# (label, changes) applied one after another to Setting().
ADDED = (
  ('default (window classifier, cross-entropy)', {}),
  ('+ batch 1024, 12 epochs', {'batch_size': 1024, 'epochs': 12}),
  ('+ CRF over sentences', {'objective': 'crf'}),
  ('+ IOBES tags', {'tag_scheme': 'iobes'}),
  ('+ affix and shape features', {'features': ('prefix', 'suffix', 'shape')}),
  ('+ dropout 0.3', {'dropout': 0.3}),
  ('+ best-dev selection', {'select': 'best_dev'}),
  (
    '+ gazetteer (across folds)',
    {'features': ('prefix', 'suffix', 'shape', 'gazetteer')},
  ),
  (
    '+ document context (two passes)',
    {'features': ('prefix', 'suffix', 'shape', 'gazetteer', 'document')},
  ),
  ('+ 200 hidden units (from 300)', {'hidden': 200}),
  ('+ ReLU hidden layer (from tanh)', {'nonlinearity': 'relu'}),
  ('+ word dropout 0.1', {'word_dropout': 0.1}),
)

# (label, changes) each applied alone to the full model (the last ADDED row).
REMOVED = (
  (
    '- CRF (cross-entropy, Viterbi over valid tags)',
    {'objective': 'xent', 'decode': 'viterbi'},
  ),
  ('- IOBES tags', {'tag_scheme': 'file'}),
  ('- affix and shape features', {'features': ('gazetteer', 'document')}),
  ('- dropout', {'dropout': 0.0}),
  ('- best-dev selection', {'select': 'last'}),
  ('- gazetteer', {'features': ('prefix', 'suffix', 'shape', 'document')}),
  (
    '- document context',
    {'features': ('prefix', 'suffix', 'shape', 'gazetteer')},
  ),
  ('- ReLU (tanh)', {'nonlinearity': 'tanh'}),
  ('- word dropout', {'word_dropout': 0.0}),
  ('- CRF (the structured margin instead)', {'objective': 'struct_margin'}),
)


# (label, changes) applied one after another to the full model: the last
# two rows are experiments/configs/conll_best.flags and conll_dilated.flags.
BEYOND = (
  ('+ ensemble of 3 (averaged scores)', {'ensemble': 3}),
  ('+ bias against O (kept when beyond the noise)', {'tune_o_bias': True}),
  ('+ windows of windows (3 dilated layers)', {'model': 'dilated'}),
)


SCORERS = ('lowercased', 'cross')  # what ablation.run's scorers may measure


def plan(rows='all'):
  """[(path, label, Setting)] of the rows: path 'added', 'removed' or
  'beyond'; rows: 'all' or one path ('beyond' starts with the full model,
  its reference)."""
  out, s = [], Setting()
  for label, changes in ADDED:
    s = s._replace(**changes)
    out.append(('added', label, s))
  full = s
  for label, changes in REMOVED:
    out.append(('removed', label, full._replace(**changes)))
  for label, changes in BEYOND:
    s = s._replace(**changes)
    out.append(('beyond', label, s))
  if rows == 'beyond':
    out = [out[len(ADDED) - 1]] + [r for r in out if r[0] == 'beyond']
  elif rows != 'all':
    out = [r for r in out if r[0] == rows]
  return out


def run(
  load_dataset,
  model_cfg,
  cfg,
  hyper,
  seeds,
  *,
  rows='all',
  scorers=None,
  log=print,
  events_dir=None,
):
  """Trains every row of `plan(rows)` with every seed.

  Args:
    load_dataset: fn(features, tag_scheme, case_augment) -> dataset_lib.Dataset
      (cached here).
    model_cfg, cfg, hyper: the settings a row does not vary
      (model.ModelConfig, classifier.TrainConfig, engine.Hyper scalars;
      e.g. the features' size, model_cfg.feature_dim).
    seeds: the seeds of every row.
    rows: 'all', 'added', 'removed' or 'beyond'.
    scorers: {key: fn(setup, params, o_bias) -> scores (tagging.evaluate's)}
      of each trained model (its research.setup.Setup), key one of SCORERS.
    log: progress printer.
    events_dir: a directory that gets each row's TensorBoard stream
      (`row_stream`), or None.

  Returns:
    [{'path', 'label', 'setting', 'seed', 'dev', 'test'?, each key of
      scorers, 'train_seconds', 'words_per_sec', 'wall_seconds',
      'selected'}], one per row and seed.
  """
  datasets, results = {}, []
  steps = plan(rows)
  for i, (path, label, s) in enumerate(steps):
    features = tuple(f for f in s.features if f != 'document')
    key = (features, s.tag_scheme, s.case_augment)
    if key not in datasets:
      datasets[key] = load_dataset(*key)
    ds = datasets[key]
    for seed in seeds:
      log(f'== row {i + 1}/{len(steps)} {label}, seed {seed}')
      t0 = time.perf_counter()
      row_model = model_cfg._replace(
        dropout=s.dropout,
        hidden=s.hidden,
        nonlinearity=s.nonlinearity,
        model=s.model,
      )
      row_cfg = cfg._replace(
        objective=s.objective,
        batch_size=s.batch_size,
        word_dropout=s.word_dropout,
      )
      setup = setup_lib.resolve(ds, row_model, row_cfg, s.decode, s.ensemble)
      trained = training.train(
        setup,
        hyper,
        epochs=s.epochs,
        seed=seed,
        select=s.select,
        document='document' in s.features,
        tune_o_bias=s.tune_o_bias,
        log=lambda _: None,
        events_dir=events_dir and events_dir / row_stream(path, i, seed),
      )
      result = trained.result
      wall = time.perf_counter() - t0
      r = {
        'path': path,
        'label': label,
        'setting': s._asdict(),
        'seed': seed,
        'dev': result['dev'],
        'train_seconds': result['train_seconds'],
        'words_per_sec': result['train_windows_per_sec'],
        'wall_seconds': wall,
        'selected': result['selected'],
      }
      if 'test' in result:
        r['test'] = result['test']
      for key, score in (scorers or {}).items():
        r[key] = score(trained.setup, trained.params, result.get('o_bias', 0.0))
      log(
        f'   dev F1 {r["dev"]["f1"]:.2f}'
        + f' (unseen {r["dev"].get("unseen", {}).get("f1", float("nan")):.2f})'
        + (f', test F1 {r["test"]["f1"]:.2f}' if 'test' in r else '')
        + ''.join(f', {k} F1 {r[k]["f1"]:.2f}' for k in SCORERS if k in r)
        + f' in {wall:.0f}s ({r["words_per_sec"]:,.0f} words/s)'
      )
      results.append(r)
  return results


def row_stream(path, index, seed):
  """A row's TensorBoard stream: its path, its number in the plan, seed."""
  return f'{path}_{index + 1:02d}_seed={seed}'


def change(values, reference):
  """(mean difference, whether it exceeds the seeds' spread: the larger of
  the two ranges; None with one seed), or (None, None) without both."""
  if not values or not reference:
    return None, None
  delta = float(np.mean(values) - np.mean(reference))
  if min(len(values), len(reference)) < 2:  # one seed has no spread
    return delta, None
  return delta, bool(abs(delta) > max(np.ptp(values), np.ptp(reference)))


MEASURES = ('unseen', *SCORERS)  # the generalization measures of a row


def summarize(results):
  """Rows of the table: per (path, label) the mean +- std over seeds, the
  change from the reference row and whether it exceeds the seeds' spread.

  Returns [{'path', 'label', 'dev': [f1 per seed], 'test': [...] or None,
  'precision', 'recall', and each of MEASURES (or None): [...], 'delta',
  'exceeds' (of dev F1), 'changes': {measure: (delta, exceeds)},
  'train_seconds', 'words_per_sec', 'wall_seconds'}]; an 'added' or
  'beyond' row's reference is the row above it, a 'removed' row's the full
  model.
  """
  groups = {}
  for r in results:
    groups.setdefault((r['path'], r['label']), []).append(r)
  rows, prev, full = [], None, None
  for (path, label), rs in groups.items():
    row = {
      'path': path,
      'label': label,
      'dev': [r['dev']['f1'] for r in rs],
      'test': [r['test']['f1'] for r in rs] if 'test' in rs[0] else None,
      'precision': [r['dev']['precision'] for r in rs],
      'recall': [r['dev']['recall'] for r in rs],
      'unseen': [r['dev']['unseen']['f1'] for r in rs]
      if 'unseen' in rs[0]['dev']
      else None,
      **{k: [r[k]['f1'] for r in rs] if k in rs[0] else None for k in SCORERS},
      'per_type': {
        t: float(np.mean([r['dev']['per_type'][t]['f1'] for r in rs]))
        for t in rs[0]['dev']['per_type']
      },
      'train_seconds': float(np.mean([r['train_seconds'] for r in rs])),
      'words_per_sec': float(np.mean([r['words_per_sec'] for r in rs])),
      'wall_seconds': float(np.mean([r['wall_seconds'] for r in rs])),
    }
    ref = full if path == 'removed' else prev
    row['delta'], row['exceeds'] = change(row['dev'], ref and ref['dev'])
    row['changes'] = {
      k: change(row[k], ref and ref[k]) for k in MEASURES if ref and row[k]
    }
    rows.append(row)
    if path != 'removed':
      prev = row
    if path == 'added':
      full = row
  return rows
