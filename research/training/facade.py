"""The training façade: a stack of S configurations of one model on a
Dataset, for a single run (S = 1), an ensemble (S members, scored as one
model) and a sweep (S configurations, each scored alone) alike.

`fit_stack` picks the task once (shuffled windows, or whole sentences
packed into rows: `ner.trains_on_sentences`), steps the compiled loop
(`engine.Loop`) and, between its calls, evaluates, logs, keeps the best-dev
parameters (`selection`), checkpoints (`resume`) and stops a single run
that diverged (`divergence`). `train` is one model, document context's
first pass included (`two_passes.prepare`, a transform of the Dataset),
scored on dev and test.
"""

from typing import NamedTuple

import numpy as np

from research import ner
from research import timing
from research import workdir as workdir_lib
from research.evaluation import scoring
from research.formulas import model as model_lib
from research.training import classifier
from research.training import divergence
from research.training import engine
from research.training import resume
from research.training import selection
from research.training import sequence
from research.training import two_passes


class Trained(NamedTuple):
  params: dict
  result: dict
  ds: ner.Dataset  # the Dataset trained on (document context added)
  history: list  # the evaluation rows (`one_model_row`s)


class Fitted(NamedTuple):
  params: dict  # stacked [S, ...]
  history: list  # evaluation rows: step, epoch, train_<metric> [S], splits
  stats: dict  # engine.Loop.stats, and the task's (rows, fill, ...)
  best: selection.BestDev | None  # with select='best_dev'


def task_and_data(ds, model_cfg, cfg, sentences):
  """(task, device data, n examples, the task's stats) of ds's training
  split: packed sentence rows (research.training.sequence) or windows."""
  train = ds.windows['train']
  if sentences:
    lengths = sequence.sentence_lengths(ds.splits['train'])
    return sequence.task_and_data(train, lengths, model_cfg, cfg)
  task = classifier.ClassifierTask(model_cfg, cfg)
  return task, classifier.device_data(train), len(train.labels), {}


def evaluate(ds, params, split, n_models, spec):
  """[n_models] scores (scoring.evaluate) of a split: each configuration of a
  stack, or (n_models = 1) its one model: the first configuration, or an
  ensemble of all (params with a member axis of more than one)."""
  model_cfg, objective, decode = spec
  if n_models == 1:
    models = [one_model(params, is_stack(params))]
  else:
    models = [engine.unstack(params, i) for i in range(n_models)]
  return [
    scoring.evaluate(p, ds, split, model_cfg, objective, decode) for p in models
  ]


def is_stack(params):
  """Whether stacked params hold more than one configuration."""
  return params['L'].shape[0] > 1


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


def fit_stack(
  ds,
  model_cfg,
  cfg,
  hyper,
  seeds,
  *,
  epochs,
  decode='argmax',
  ensemble=False,
  sentences=None,
  select='last',
  eval_every=0,
  eval_train=False,
  checkpoint=None,
  metrics_file=None,
  log=print,
  name='',
  stop_on_divergence=None,
):
  """Trains S = len(seeds) configurations (engine.Hyper of [S] lr and l2)
  of `model_cfg`/`cfg` on ds, and evaluates them on dev (and a sample of
  train with `eval_train`) every `eval_every` steps (0: each epoch).

  ensemble: the S are members of one model (scores averaged), trained on
  sentences. sentences: force the task (None: ner.trains_on_sentences). select:
  'last' or 'best_dev' (one model only). checkpoint: a
  research.training.checkpoint.Checkpointer (resumed when it says so).
  metrics_file: a path that gets each evaluation row as a JSON line (one model:
  its scores, the first configuration's train loss). stop_on_divergence
  (default: S = 1): a configuration that diverges raises divergence.Diverged;
  otherwise it keeps its last good parameters, is reported in
  stats['diverged_at'] and the others finish."""
  n_models = 1 if ensemble else len(seeds)
  best = selection.keeper(select, n_models)
  if sentences is None:
    sentences = ensemble or ner.trains_on_sentences(
      ds, cfg.objective, decode, cfg.word_dropout
    )
  clock = timing.Clock()
  with clock('setup'):
    loop, task_stats = make_loop(ds, model_cfg, cfg, hyper, seeds, sentences,
                                 epochs, eval_every, checkpoint)  # fmt: skip
  log(name + describe(model_cfg, cfg, loop, epochs, sentences))
  with clock('checkpoint'):
    history = resume.restore(checkpoint, loop, best, log, name)
  rows = MetricsFile(metrics_file, history)
  scores = Scorer(ds, (model_cfg, cfg.objective, decode), n_models, eval_train)
  stop = len(seeds) == 1 if stop_on_divergence is None else stop_on_divergence
  loop.compile()
  for at in loop:
    log(loop.progress(name))
    if stop:
      stop_if_diverged(loop, checkpoint, name)
    if at.evaluate:
      params = loop.params()
      row = dict(step=at.step, epoch=at.step / loop.spe, **loop.meter.take())
      with clock('evaluate'):
        history.append(dict(row, **scores(params)))
      log(dev_line(history[-1]['dev']))
      if best is not None:
        best.offer(one_model_row(history[-1]), one_model(params, ensemble))
      rows.write(history[-1])
    if at.save and checkpoint.due(at.done):
      with clock('checkpoint'):
        resume.save(checkpoint, loop, history, best)
  rows.close()
  if checkpoint is not None:
    with clock('checkpoint'):
      checkpoint.wait()  # the last save, written while the run scored
  clock.merge({'compile': loop.compile_seconds, 'train': loop.train_seconds})
  stats = dict(loop.stats(), **task_stats, seconds=clock.seconds)
  stats['trained_on'] = 'sentences' if sentences else 'windows'
  return Fitted(loop.params(), history, stats, best)


class Scorer:
  """fn(stacked params) -> {'dev': [n_models scores], 'train': [...] (the
  training sample, with eval_train)} (`evaluate`)."""

  def __init__(self, ds, spec, n_models, eval_train):
    self.ds, self.spec, self.n_models = ds, spec, n_models
    self.splits = ('dev', 'train_sample') if eval_train else ('dev',)

  def __call__(self, params):
    return {
      split.replace('train_sample', 'train'): evaluate(
        self.ds, params, split, self.n_models, self.spec
      )
      for split in self.splits
    }


class MetricsFile:
  """metrics.jsonl: each evaluation row of one model (`one_model_row`), the
  rows of a resumed run's history first; nothing when path is None."""

  def __init__(self, path, history):
    rows = [one_model_row(row) for row in history]
    self.out = workdir_lib.JsonlWriter(path, rows) if path else None

  def write(self, row):
    if self.out is not None:
      self.out.write(one_model_row(row))

  def close(self):
    if self.out is not None:
      self.out.close()


def stop_if_diverged(loop, checkpoint, name):
  """divergence.check of a loop (naming its last good checkpoint). The
  checkpoints are listed only once a configuration has diverged: listing
  them waits for a save being written in the background."""
  diverged_S = loop.diverged()
  if np.all(diverged_S < 0):
    return
  saved = checkpoint is not None and checkpoint.latest() is not None
  divergence.check(
    diverged_S,
    loop.meter.last_SxM[:, 0],
    loop.hyper.lr,
    name,
    checkpoint.directory if saved else None,
  )


def one_model(params, ensemble):
  """A stack's one model: an ensemble's stacked members, or the first."""
  return params if ensemble else engine.unstack(params, 0)


def make_loop(
  ds, model_cfg, cfg, hyper, seeds, sentences, epochs, eval_every, checkpoint
):
  """(the engine.Loop of S = len(seeds) configurations of ds's task, the
  task's stats), their initial parameters from `seeds`."""
  task, data, n, task_stats = task_and_data(ds, model_cfg, cfg, sentences)
  init = [
    ner.init_params(ds, model_cfg, s, objective=cfg.objective) for s in seeds
  ]
  loop = engine.Loop(
    task,
    engine.stack(init),
    hyper,
    seeds,
    data,
    num_examples=n,
    epochs=epochs,
    eval_every=eval_every,
    save_every=checkpoint.every if checkpoint else None,
    lr_decay=cfg.lr_decay,
  )
  return loop, task_stats


def describe(model_cfg, cfg, loop, epochs, sentences):
  """The line that says what a fit trains."""
  S = len(loop.seeds)
  stacked = loop.state.params  # S configurations (more when padded)
  count = model_lib.count_params(stacked) // stacked['L'].shape[0]
  return (
    f'model {model_cfg.model} ({count:,} parameters'
    f'{f", {S} configurations" if S > 1 else ""}), objective {cfg.objective}, '
    f'{cfg.optimizer}, batch {cfg.batch_size}, {epochs} epochs, trained on '
    f'{"sentences" if sentences else "windows"}'
  )


def one_model_row(row):
  """An evaluation row of a stack as one model's (its first's) row."""
  out = dict(row)
  for key in ('dev', 'train'):
    if key in out:
      out[key] = out[key][0]
  if out.get('train_loss') is not None:
    out['train_loss'] = out['train_loss'][0]
  return out


def train(
  ds,
  model_cfg,
  cfg,
  hyper,
  *,
  epochs,
  seed=0,
  ensemble=1,
  select='last',
  decode='argmax',
  document=False,
  eval_every=0,
  eval_train=False,
  checkpoint=None,
  metrics_file=None,
  log=print,
  tune_o_bias=False,
):
  """One model on ds (an ensemble of `ensemble` members, seeds seed,
  seed+1, ...), scored on dev and test. With `document`, the Dataset is
  first given document context (two_passes.prepare: two first-pass models
  on halves of the training documents, checkpointed as 'first_pass_1' and
  'first_pass_2'); the model's own training checkpoints as 'model'.

  Returns Trained(params, result, ds, history): params stacked on a member axis
  when ensemble > 1 (the first pass's under two_passes.FIRST_PASS); result
  has 'dev' (and 'test') scores, 'selected', 'trained_on',
  'final_train_loss', 'weight_norm', the loop's stats and 'coverage' (and
  'first_pass') and 'seconds' (timing.PARTS of every pass) (and, with
  tune_o_bias, the decoding bias against O chosen on dev: `with_o_bias`);
  ds is the
  Dataset trained on (with document context);
  history the evaluation rows of the model (metrics.jsonl's).
  """
  first, clock = None, timing.Clock()
  if document:
    ds, first = document_context(
      ds,
      model_cfg,
      cfg,
      hyper,
      epochs=epochs,
      seed=seed,
      select=select,
      decode=decode,
      checkpoint=checkpoint,
      log=log,
    )
    clock.merge(first.summary['parts'])
    log('second pass')
  seeds = [seed + i for i in range(ensemble)]
  hypers = engine.Hyper([hyper.lr] * ensemble, [hyper.l2] * ensemble)
  fitted = fit_stack(
    ds,
    model_cfg,
    cfg,
    hypers,
    seeds,
    epochs=epochs,
    decode=decode,
    ensemble=ensemble > 1,
    select=select,
    eval_every=eval_every,
    eval_train=eval_train,
    checkpoint=checkpoint and checkpoint.child('model'),
    metrics_file=metrics_file,
    log=log,
  )
  clock.merge(fitted.stats['seconds'])
  with clock('evaluate'):
    params, result = scored(
      ds, fitted, model_cfg, cfg.objective, decode, log, tune_o_bias
    )
  result['seconds'] = clock.seconds
  if first is not None:
    params = two_passes.with_first_pass(params, first.params)
    result['first_pass'] = first.summary
  history = [one_model_row(row) for row in fitted.history]
  return Trained(params, result, ds, history)


def with_o_bias(ds, params, model_cfg, objective, decode, log):
  """The result entries of decoding with the bias against O that scores
  best on dev (scoring.tune_o_bias): 'o_bias', 'o_bias_dev_f1' (each bias
  tried), and 'dev' (and 'test') scored with it."""
  bias, tried = scoring.tune_o_bias(params, ds, model_cfg, objective, decode)
  log(
    f'bias against O chosen on dev: {bias:g} (dev F1 '
    + ', '.join(f'{b:g}: {s["f1"]:.2f}' for b, s in tried.items())
    + ')'
  )
  out = {
    'o_bias': bias,
    'o_bias_dev_f1': {str(b): s['f1'] for b, s in tried.items()},
    'dev': tried[bias],
  }
  if 'test' in ds.splits:
    out['test'] = scoring.evaluate(
      params, ds, 'test', model_cfg, objective, decode, bias
    )
  return out


def scored(ds, fitted, model_cfg, objective, decode, log, tune_o_bias=False):
  """(the selected parameters of a fitted model, its result: dev and test
  scores, which evaluation was kept, the loop's stats, ...; with
  tune_o_bias, scored with the bias against O chosen on dev: `with_o_bias`)."""
  last = one_model_row(fitted.history[-1])
  ensemble = is_stack(fitted.params)
  params = one_model(fitted.params, ensemble)
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
    'coverage': ds.coverage,
  }
  if 'test' in ds.splits:
    result['test'] = scoring.evaluate(
      params, ds, 'test', model_cfg, objective, decode
    )
  if tune_o_bias:
    result.update(with_o_bias(ds, params, model_cfg, objective, decode, log))
  return params, result


def document_context(
  ds, model_cfg, cfg, hyper, *, epochs, seed, select, decode, checkpoint, log
):
  """two_passes.prepare with first-pass models trained by `train` (seeds
  seed + 1000 and seed + 2000; checkpointed as 'first_pass_1' and
  'first_pass_2'): (ds with the document feature, two_passes.FirstPass)."""

  parts = timing.Clock()

  def first_pass_model(part, half):
    trained = train(
      part,
      model_cfg,
      cfg,
      hyper,
      epochs=epochs,
      seed=seed + 1000 * (half + 1),
      select=select,
      decode=decode,
      log=log,
      checkpoint=checkpoint and checkpoint.child(f'first_pass_{half + 1}'),
    )
    parts.merge(trained.result['seconds'])
    return trained.params, trained.result

  ds, first = two_passes.prepare(
    ds, first_pass_model, model_cfg, cfg.objective, decode, log
  )
  # The rest of the first pass: tagging every split, the feature's column.
  parts.add('setup', first.summary['seconds'] - sum(parts.seconds.values()))
  first.summary['parts'] = parts.seconds
  return ds, first
