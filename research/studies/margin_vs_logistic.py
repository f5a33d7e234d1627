"""The deck's window max-margin against a logistic classifier, same scorer.

Task: is the center word of a window an entity of type T (any prefix,
B-/I-/E-/S-)? Model: s = U . g(W x + b) on word + casing vectors. Objectives,
each trained for the same number of steps (epochs passes of batch_size
windows over all training windows) with the same optimizer and initial
parameters:

* margin, negatives 'corrupt' (the deck's): the true windows are the positive
  ones; J = sum over M corrupt windows of max(0, 1 - s + s_c), a corrupt
  window having its center word replaced by a uniformly drawn vocabulary
  word.
* margin, negatives 'corrupt+real': as above plus M real negative training
  windows per true window.
* logistic: sigma(s) with the logistic loss on all windows.

Scores: token-level precision/recall/F1 of `s > 0` (= sigma(s) > 0.5) on dev
(and test); average precision; the fraction of active hinges during training
and on fixed dev corruptions.
"""

import functools
import time
from typing import NamedTuple

import jax
import numpy as np

from research import setup as setup_lib
from research.errors import UserError
from research.evaluation import metrics
from research.formulas import model as model_lib
from research.training import engine
from research.training import window_scorer

_DEV_CORRUPT_SEED = 1234  # fixed dev corruptions, shared by all runs


def model_runs(negatives):
  """(label, ScorerConfig overrides) of each model trained."""
  runs = [
    (f'margin ({n})', dict(objective='margin', negatives=n)) for n in negatives
  ]
  return runs + [('logistic', dict(objective='logistic'))]


def _split_arrays(ds, entity_type):
  """Windows and binary labels of each evaluated split."""
  out = {}
  for split in ('train', 'dev', 'test'):
    if split in ds.windows:
      w = ds.windows[split]
      out[split] = (
        w.words,
        w.casing,
        window_scorer.entity_labels(w.labels, ds.tags, entity_type),
      )
  return out


def _dev_pairs(words, casing, gold, num_corrupt, casing_table, vocab_size):
  """Fixed dev (true, corrupt) and (true, real negative) window pairs."""
  key = jax.random.key(_DEV_CORRUPT_SEED)
  k_corrupt, k_real = jax.random.split(key)
  pos, neg = np.flatnonzero(gold), np.flatnonzero(~gold)
  w, c = words[pos], casing[pos]
  cw, cc = window_scorer.corrupt_windows(
    k_corrupt, w, c, num_corrupt, vocab_size, casing_table
  )
  pairs = {'corrupt': (w, c, np.asarray(cw), np.asarray(cc))}
  if len(neg):
    real = neg[
      np.asarray(
        jax.random.randint(k_real, (len(pos), num_corrupt), 0, len(neg))
      )
    ]
    pairs['real'] = (w, c, words[real], casing[real])
  return pairs


class Settings(NamedTuple):
  """What a window-margin study trains (the entry point's flags)."""

  entity_type: str = 'LOC'
  negatives: tuple = ('corrupt',)  # margin runs, each of NEGATIVES
  seeds: tuple = (0,)
  num_corrupt: int = 5
  corrupt_casing: str = 'word'
  nonlinearity: str = 'tanh'
  window: int = 2
  hidden: int = 300
  optimizer: str = 'adam'
  lr: float = 1e-3
  batch_size: int = 256
  epochs: int = 10
  mesh: str = 'auto'  # the devices (parallel.resolve)
  eval_every: int = 0
  freeze_embeddings: bool = False


def check_negatives(negatives):
  """The distinct margin runs asked for, or a one-line error."""
  negatives = [n.strip() for n in negatives]
  bad = [n for n in negatives if n not in window_scorer.NEGATIVES]
  if bad or not negatives:
    raise UserError(
      f'`negatives={",".join(negatives)}`: use one or both of '
      f'{", ".join(window_scorer.NEGATIVES)}'
    )
  return tuple(dict.fromkeys(negatives))


def check_entity_type(ds, entity_type):
  """Raises a one-line UserError when no tag has type `entity_type`."""
  window_scorer.entity_labels(
    ds.windows['train'].labels[:1], ds.tags, entity_type
  )


def _train_data(words_NxK, casing_NxK, gold_N, vocab_size):
  """The training windows as a window_scorer.TrainData of device arrays.

  Returns:
    (data, casing_table): data holds the windows, float labels and the
    indices of the positive and the negative windows; casing_table is
    `window_scorer.casing_of_words` of the training windows.
  """
  casing_table = window_scorer.casing_of_words(
    words_NxK, casing_NxK, vocab_size
  )
  data = window_scorer.TrainData(
    words_NxK,
    casing_NxK,
    gold_N.astype(np.float32),
    np.flatnonzero(gold_N).astype(np.int32),
    np.flatnonzero(~gold_N).astype(np.int32),
    casing_table,
  )
  return jax.tree.map(jax.numpy.asarray, data), casing_table


def _log_counts(arrays, entity_type, log):
  """Logs the positive and all windows of each evaluated split."""
  counts = ', '.join(
    f'{s} {int(a[2].sum()):,}/{len(a[2]):,}' for s, a in arrays.items()
  )
  log(f'{entity_type} at the center (positive/all windows): {counts}')


def _scorer_base(st):
  """The ScorerConfig fields shared by every model run."""
  return dict(
    num_corrupt=st.num_corrupt,
    corrupt_casing=st.corrupt_casing,
    nonlinearity=st.nonlinearity,
    optimizer=st.optimizer,
    batch_size=st.batch_size,
    freeze_embeddings=st.freeze_embeddings,
    mesh=st.mesh,
  )


def _evaluate(
  arrays, dev_pairs, nonlinearity, params, split='dev', threshold=0.0
):
  """Detection scores of `params` on `split` at `threshold`; on dev also the
  hinge statistics of each of `dev_pairs` (as 'dev_hinge_<name>')."""
  w, c, g = arrays[split]
  s = window_scorer.predict_scores(params, w, c, nonlinearity)
  row = {split: metrics.detection_scores(s, g, threshold)}
  if split == 'dev':
    for name, pairs in dev_pairs.items():
      row[f'dev_hinge_{name}'] = window_scorer.hinge_stats(
        params, *pairs, nonlinearity=nonlinearity
      )
  return row


def _evaluate_logger(evaluate, label, log):
  """The `evaluate` callback of window_scorer.fit for the run `label`: dev
  scores of the (one-configuration) stacked parameters, logged."""

  def evaluate_log(stacked):
    row = evaluate(engine.unstack(stacked, 0))
    d = row['dev']
    log(
      f'  {label} dev P {d["precision"]:.1f} R {d["recall"]:.1f} F1 '
      f'{d["f1"]:.1f} AP {d["ap"]:.1f}; dev active hinges: corrupt '
      f'{row["dev_hinge_corrupt"]["active"]:.3f}'
      + (
        f', real {row["dev_hinge_real"]["active"]:.3f}'
        if 'dev_hinge_real' in row
        else ''
      )
    )
    return row

  return evaluate_log


def _run_record(label, seed, cfg, lr, history, stats):
  """The results.json entry of one trained model (test scores not yet);
  flattens `history`'s per-configuration train numbers in place."""
  for h in history:  # one configuration: plain numbers
    for key in ('train_loss', 'train_active'):
      if key in h:
        h[key] = None if h[key] is None else h[key][0]
  per_step = stats['per_step']
  run = {
    'label': label,
    'seed': seed,
    'config': dict(cfg._asdict(), lr=lr),
    'dev': history[-1]['dev'],
    'history': history,
    'train_active_per_step': (
      [round(float(a), 4) for a in per_step['active'][0]]
      if cfg.objective == 'margin'
      else []
    ),
    'train_loss_per_step': [round(float(a), 5) for a in per_step['loss'][0]],
    'windows_per_sec': stats['train_windows_per_sec'],
    **{k: stats[k] for k in ('train_seconds', 'compile_seconds', 'steps')},
  }
  for name in ('corrupt', 'real'):
    if f'dev_hinge_{name}' in history[-1]:
      run[f'dev_hinge_{name}'] = history[-1][f'dev_hinge_{name}']
  return run


def run(ds, st, log=print):
  """Trains every model of `model_runs(st.negatives)` for each seed.

  Returns:
    (results, arrays): results as written to results.json (entity_type,
    num_steps, steps_per_epoch, runs, total_seconds) and the evaluated
    splits' (words, casing, gold) arrays.
  """
  arrays = _split_arrays(ds, st.entity_type)  # checks the entity type
  V = len(ds.vocab)
  data, casing_table = _train_data(*arrays['train'], V)
  keep = st.corrupt_casing == 'keep'
  dev_pairs = _dev_pairs(
    *arrays['dev'], st.num_corrupt, None if keep else casing_table, V
  )
  _log_counts(arrays, st.entity_type, log)

  B = st.batch_size
  steps_per_epoch = max(1, len(arrays['train'][2]) // B)
  num_steps = steps_per_epoch * st.epochs
  model_cfg = model_lib.ModelConfig(
    model='scorer',
    nonlinearity=st.nonlinearity,
    window=st.window,
    hidden=st.hidden,
  )
  evaluate = functools.partial(
    _evaluate, arrays, dev_pairs, model_cfg.nonlinearity
  )
  base = _scorer_base(st)
  results = {
    'entity_type': st.entity_type,
    'num_steps': num_steps,
    'steps_per_epoch': steps_per_epoch,
    'runs': [],
  }
  t_start = time.perf_counter()
  for seed in st.seeds:
    init = setup_lib.init_params(ds, model_cfg, seed, num_classes=1)
    for label, overrides in model_runs(st.negatives):
      cfg = window_scorer.ScorerConfig(**base, **overrides)
      log(
        f'{label} seed {seed}: {model_lib.count_params(init):,} parameters, '
        f'{num_steps} steps of {B} true windows '
        f'({window_scorer.windows_per_step(cfg):,} scored)'
      )
      stacked, history, stats = window_scorer.fit(
        engine.stack([init]),
        data,
        engine.Hyper([st.lr], [0.0]),
        [seed],
        cfg,
        num_steps=num_steps,
        steps_per_epoch=steps_per_epoch,
        evaluate=_evaluate_logger(evaluate, label, log),
        eval_every=st.eval_every or steps_per_epoch,
        log=log,
        name=f'{label} seed {seed} ',
      )
      params = engine.unstack(stacked, 0)
      run = _run_record(label, seed, cfg, st.lr, history, stats)
      if 'test' in arrays:
        run['test'] = evaluate(params, 'test')['test']
        run['test_dev_threshold'] = evaluate(
          params, 'test', run['dev']['best_threshold']
        )['test']
      results['runs'].append(run)
  results['total_seconds'] = time.perf_counter() - t_start
  return results, arrays
