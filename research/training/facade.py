"""The training façade: a stack of S configurations of one model on a
Dataset, for a single run (S = 1), an ensemble (S members, scored as one
model) and a sweep (S configurations, each scored alone) alike.

Every run is a research.setup.Setup (the Dataset with the objective, the task
and the decoding resolved once). `fit_stack` builds the compiled loop
(`engine.Loop`) of the Setup's task and research.training.driver.drive, the
one loop driver, steps it; `Scorer` is what it evaluates between calls.
`train` is one model, document context's first pass included
(`two_passes.prepare`, a transform of the Dataset), scored on dev and test.
"""

from typing import NamedTuple

import numpy as np

from research import timing
from research.evaluation import scoring
from research.formulas import model as model_lib
from research.training import classifier
from research.training import driver
from research.training import engine
from research.training import selection
from research.training import two_passes


class Trained(NamedTuple):
  params: dict
  result: dict
  setup: object  # the research.setup.Setup trained (document context added)
  history: list  # the evaluation rows (`one_model_row`s)


def evaluate(setup, params, split, n_models):
  """[n_models] scores (scoring.evaluate) of a split: each configuration of a
  stack, or (n_models = 1) its one model: the first configuration, or an
  ensemble of all (params with a member axis of more than one)."""
  if n_models == 1:
    models = [driver.one_model(params, driver.is_stack(params))]
  else:
    models = [engine.unstack(params, i) for i in range(n_models)]
  return [scoring.evaluate(setup, p, split) for p in models]


def dev_line(scores):
  """The log line of an evaluation's dev scores (one model, or a stack):
  one model's F1 with that of its unseen entities (scoring.evaluate)."""
  if len(scores) > 1:
    f1 = [s['f1'] for s in scores]
    return (
      f'  dev F1 {np.mean(f1):.2f} (mean of {len(f1)}; '
      f'{min(f1):.2f}-{max(f1):.2f})'
    )
  s = scores[0]
  unseen = f' (unseen {s["unseen"]["f1"]:.1f})' if 'unseen' in s else ''
  loss = f'  loss {s["loss"]:.4f}' if 'loss' in s else ''
  return f'  dev F1 {s["f1"]:.2f}{unseen}  accuracy {s["accuracy"]:.2f}{loss}'


def stack_loop(
  setup, hyper, seeds, *, epochs, eval_every=0, checkpoint=None, log=print,
  name='',
):  # fmt: skip
  """The engine.Loop of S = len(seeds) configurations (engine.Hyper of [S]
  lr and l2) of a research.setup.Setup's task, from the initial parameters
  of `seeds`, evaluating every `eval_every` steps (0: each epoch) and
  saving as `checkpoint` (a research.training.checkpoint.Checkpointer, or
  None) says; its line logged. Returns (loop, the task's stats with
  'trained_on', the timing.Clock of its 'setup' seconds)."""
  clock = timing.Clock()
  with clock('setup'):
    task, data, n, task_stats = setup.task_and_data()
    loop = engine.Loop(
      task,
      engine.stack([setup.init_params(s) for s in seeds]),
      hyper,
      seeds,
      data,
      num_examples=n,
      epochs=epochs,
      eval_every=eval_every,
      save_every=checkpoint.every if checkpoint else None,
      lr_decay=setup.cfg.lr_decay,
    )
  log(name + describe(setup, loop, epochs))
  task_stats['trained_on'] = 'sentences' if setup.sentences else 'windows'
  return loop, task_stats, clock


def fit_stack(
  setup,
  hyper,
  seeds,
  *,
  epochs,
  select='last',
  eval_every=0,
  eval_train=False,
  checkpoint=None,
  metrics_file=None,
  log=print,
  name='',
  stop_on_divergence=None,
  events=None,
):
  """Trains S = len(seeds) configurations of a research.setup.Setup
  (`stack_loop`) by `drive`, evaluating them on dev (and a sample of train
  with `eval_train`): each alone (a sweep), or with setup.members > 1 as
  the members of one model (scores averaged). select: 'last' or
  'best_dev' (one model only). metrics_file, stop_on_divergence, events:
  `drive`'s. Returns drive's Fitted."""
  loop, stats, clock = stack_loop(
    setup,
    hyper,
    seeds,
    epochs=epochs,
    eval_every=eval_every,
    checkpoint=checkpoint,
    log=log,
    name=name,
  )
  n_models = 1 if setup.members > 1 else len(seeds)
  return driver.drive(
    loop,
    Scorer(setup, n_models, eval_train, log),
    best=selection.keeper(select, n_models),
    ensemble=setup.members > 1,
    checkpoint=checkpoint,
    metrics_file=metrics_file,
    log=log,
    name=name,
    stop_on_divergence=stop_on_divergence,
    clock=clock,
    stats=stats,
    events=events,
  )


class Scorer:
  """fn(stacked params) -> {'dev': [n_models scores], 'train': [...] (the
  training sample, with eval_train)} (`evaluate`); logs the dev line."""

  def __init__(self, setup, n_models, eval_train, log=print):
    self.setup, self.n_models, self.log = setup, n_models, log
    self.splits = ('dev', 'train_sample') if eval_train else ('dev',)

  def __call__(self, params):
    out = {
      split.replace('train_sample', 'train'): evaluate(
        self.setup, params, split, self.n_models
      )
      for split in self.splits
    }
    self.log(dev_line(out['dev']))
    return out


def describe(setup, loop, epochs):
  """The line that says what a fit trains."""
  S = len(loop.seeds)
  stacked = loop.state.params  # S configurations (more when padded)
  count = model_lib.count_params(stacked) // stacked['L'].shape[0]
  cfg = setup.cfg
  return (
    f'model {setup.model_cfg.model} ({count:,} parameters'
    f'{f", {S} configurations" if S > 1 else ""}), objective '
    f'{setup.objective.name}, {cfg.optimizer}, batch {cfg.batch_size}, '
    f'{epochs} epochs, trained on '
    f'{"sentences" if setup.sentences else "windows"}'
  )


def train(
  setup,
  hyper,
  *,
  epochs,
  seed=0,
  select='last',
  document=False,
  eval_every=0,
  eval_train=False,
  checkpoint=None,
  metrics_file=None,
  log=print,
  tune_o_bias=False,
  events_dir=None,
  profile_dir=None,
  test=True,
):
  """One model of a research.setup.Setup (an ensemble of setup.members
  members, seeds seed, seed+1, ...), scored on dev and test. With
  `document`, the Dataset is first given document context
  (`document_context`: two first-pass models on halves of the training
  documents, checkpointed as 'first_pass_1' and 'first_pass_2'); the
  model's own training checkpoints as 'model', writes its TensorBoard
  event files into `events_dir` and a profile of its first compiled calls
  and first evaluation into `profile_dir` (when given: `drive`).

  Returns Trained(params, result, setup, history): params stacked on a
  member axis for an ensemble (the first pass's under
  two_passes.FIRST_PASS); result has 'dev' (and 'test') scores,
  'selected', 'trained_on', 'final_train_loss', 'weight_norm', the loop's
  stats and 'coverage' (and 'first_pass') and 'seconds' (timing.PARTS of
  every pass) (and, with tune_o_bias, the decoding bias against O chosen
  on dev: `with_o_bias`); setup the Setup trained (with document context);
  history the evaluation rows of the model (metrics.jsonl's). test=False
  scores no test split (a first pass's models are read on dev alone).
  """
  first, clock = None, timing.Clock()
  if document:
    setup, first = document_context(
      setup,
      hyper,
      epochs=epochs,
      seed=seed,
      select=select,
      checkpoint=checkpoint,
      log=log,
    )
    clock.merge(first.summary['parts'])
    log('second pass')
  n, own = setup.members, checkpoint and checkpoint.child('model')
  loop, stats, parts = stack_loop(
    setup,
    engine.Hyper([hyper.lr] * n, [hyper.l2] * n),
    [seed + i for i in range(n)],
    epochs=epochs,
    eval_every=eval_every,
    checkpoint=own,
    log=log,
  )
  # fit_stack's drive, for one model (its members scored as one)
  fitted = driver.drive(
    loop,
    Scorer(setup, 1, eval_train, log),
    best=selection.keeper(select, 1),
    ensemble=n > 1,
    checkpoint=own,
    metrics_file=metrics_file,
    log=log,
    clock=parts,
    stats=stats,
    events=events_dir and (events_dir, ('',)),
    profile_dir=profile_dir,
  )
  clock.merge(fitted.stats['seconds'])
  with clock('evaluate'):
    params, result = scored(setup, fitted, log, tune_o_bias, test)
  result['seconds'] = clock.seconds
  if first is not None:
    params = two_passes.with_first_pass(params, first.params)
    result['first_pass'] = first.summary
  history = [driver.one_model_row(row) for row in fitted.history]
  return Trained(params, result, setup, history)


def with_o_bias(setup, params, log, test_scores=None):
  """The result entries of decoding with the bias against O chosen on dev
  and kept only when it beats the resampling noise (scoring.tune_o_bias):
  'o_bias', 'o_bias_dev_f1' (each bias tried), 'o_bias_test' (the
  candidate, its dev F1 gain over 0 and that gain's bootstrap interval),
  and 'dev' (and 'test') scored with the bias kept (`test_scores`: the
  test split's scores without a bias, when they are at hand)."""
  bias, tried, test = scoring.tune_o_bias(setup, params)
  low, high = test['interval']
  log(
    f'bias against O: {bias:g} (best on dev {test["candidate"]:g}, gain '
    f'{test["gain"]:+.2f} F1, {100 * test["confidence"]:.0f}% interval '
    f'[{low:+.2f}, {high:+.2f}] over {test["resamples"]} resamples of the '
    'dev sentences; kept only when the interval is above 0)'
  )
  out = {
    'o_bias': bias,
    'o_bias_dev_f1': {str(b): s['f1'] for b, s in tried.items()},
    'o_bias_test': test,
    'dev': tried[bias],
  }
  if test_scores is not None and bias == 0:
    out['test'] = test_scores
  elif 'test' in setup.ds.splits:
    out['test'] = scoring.evaluate(setup, params, 'test', bias)
  return out


def scored(setup, fitted, log, tune_o_bias=False, test=True):
  """(the selected parameters of a fitted model, its result: dev and
  (`test`) test scores, which evaluation was kept, the loop's stats, ...;
  with tune_o_bias, scored with the bias against O chosen on dev:
  `with_o_bias`)."""
  last = driver.one_model_row(fitted.history[-1])
  ensemble = driver.is_stack(fitted.params)
  params = driver.one_model(fitted.params, ensemble)
  dev = last['dev']
  selected = {'rule': 'last', 'step': last['step'], 'epoch': last['epoch']}
  if fitted.best is not None:
    params, dev = fitted.best.params, fitted.best.dev
    selected = fitted.best.selected()
    log(
      f'selected the parameters of step {selected["step"]} (epoch '
      f'{selected["epoch"]:g}): best dev F1 {dev["f1"]:.2f}'
    )
  result = {
    'dev': dev,
    'selected': selected,
    'final_train_loss': last['train_loss'],
    'weight_norm': classifier.weight_norm(
      engine.unstack(params, 0) if ensemble else params
    ),
    **fitted.stats,
    'coverage': setup.ds.coverage,
  }
  if test and 'test' in setup.ds.splits:
    result['test'] = scoring.evaluate(setup, params, 'test')
  if tune_o_bias:
    result.update(with_o_bias(setup, params, log, result.get('test')))
  return params, result


def document_context(setup, hyper, *, epochs, seed, select, checkpoint, log):
  """two_passes.prepare with first-pass models (one model each, on half
  the training documents) trained by `train` (seeds seed + 1000 and seed +
  2000; checkpointed as 'first_pass_1' and 'first_pass_2'): (the Setup on
  the Dataset with the document feature, two_passes.FirstPass)."""

  parts = timing.Clock()

  def first_pass_model(part, half):
    trained = train(
      setup.with_dataset(part, members=1),
      hyper,
      epochs=epochs,
      seed=seed + 1000 * (half + 1),
      select=select,
      log=log,
      checkpoint=checkpoint and checkpoint.child(f'first_pass_{half + 1}'),
      test=False,
    )
    parts.merge(trained.result['seconds'])
    return trained.params, trained.result

  ds, first = two_passes.prepare(
    setup.with_dataset(setup.ds, members=1), first_pass_model, log
  )
  # The rest of the first pass: tagging every split, the feature's column.
  parts.add('setup', first.summary['seconds'] - sum(parts.seconds.values()))
  first.summary['parts'] = parts.seconds
  return setup.with_dataset(ds), first
