"""The one loop driver of every run: `drive` steps an engine.Loop to its
end and, between its compiled calls, evaluates (beside the next call),
logs, keeps the best-dev parameters (a `selection` keeper), writes
metrics.jsonl and the TensorBoard streams (`events`), checkpoints
(`resume`), stops a run that diverged (`divergence`) and, on request,
records a profile (`Profile`). The training façade (research.training.facade:
train, sweeps, ensembles), the benchmarks and the window scorer (`fit_task`)
all run through it.
"""

import concurrent.futures
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from research import timing
from research import workdir as workdir_lib
from research.training import divergence
from research.training import engine
from research.training import events as events_lib
from research.training import resume
from research.training import selection


class Fitted(NamedTuple):
  params: dict  # stacked [S, ...]
  history: list  # evaluation rows: step, epoch, train_<metric> [S], splits
  stats: dict  # engine.Loop.stats, and the task's (rows, fill, ...)
  best: selection.BestDev | None  # with select='best_dev'


def drive(
  loop,
  evaluate=None,
  *,
  best=None,
  ensemble=False,
  eval_at_start=False,
  checkpoint=None,
  metrics_file=None,
  log=print,
  name='',
  stop_on_divergence=None,
  clock=None,
  stats=None,
  events=None,
  profile_dir=None,
):
  """Runs an engine.Loop to its end: the one loop driver of every run.

  Between the loop's compiled calls: a progress line; at its evaluation
  boundaries (and at step 0 with `eval_at_start`) a row of the history,
  `evaluate(stacked params)` merged into {'step', 'epoch',
  'train_<metric>' ([S] means since the previous row)}, computed beside
  the next compiled call (`Beside`; `evaluate` is a function of the
  params), offered to `best`
  (a selection keeper, or None) and written to `metrics_file` (a path,
  one model's rows as JSON lines: `MetricsFile`); at its save boundaries a
  checkpoint (`resume.save`; a resumed run starts from the newest,
  `resume.restore`). stop_on_divergence (default: one configuration): a
  configuration that diverges raises divergence.Diverged; otherwise it
  keeps its last good parameters, is reported in stats['diverged_at'] and
  the others finish. clock: the timing.Clock its parts are added to;
  stats: entries added to the loop's; events: (directory, stream names) of
  the TensorBoard event files each row also goes to (`events.Events`: one
  stream per configuration scored), or None; profile_dir: a directory for
  a jax.profiler trace around the first evaluation (`Profile`), or None.

  Returns Fitted(stacked params, history, stats: the loop's, `stats` and
  'seconds', the parts, best).
  """
  clock = clock or timing.Clock()
  with clock('checkpoint'):
    history = resume.restore(checkpoint, loop, best, log, name)
  record = Record(
    history, best, ensemble, MetricsFile(metrics_file, history),
    events and events_lib.Events(*events, start=loop.step), loop, clock,
  )  # fmt: skip
  stop = (
    len(loop.seeds) == 1 if stop_on_divergence is None else stop_on_divergence
  )
  loop.compile()
  beside = Beside()

  def row(step):
    # A copy: the next call takes the state's buffers (donated).
    params = jax.tree.map(jnp.copy, loop.params())
    out = dict(step=step, epoch=step / loop.spe, **loop.meter.take())
    with clock('evaluate'):
      beside.start(lambda: dict(out, **evaluate(params)), params)

  def take():
    """The evaluation running beside the loop, finished: its row kept."""
    with clock('evaluate'):
      done = beside.wait()
    if done is not None:
      record.keep(*done)

  profile = Profile(profile_dir, loop)
  try:
    if evaluate is not None and eval_at_start:
      row(0)
      take()
    for at in loop:
      take()  # the evaluation that ran beside this call
      log(loop.progress(name))
      if stop:
        stop_if_diverged(loop, checkpoint, name)
      if at.evaluate and evaluate is not None:
        row(at.step)
      save = at.save and checkpoint is not None and checkpoint.due(at.done)
      if save or at.done or profile.tracing:
        take()  # a checkpoint holds the history; the profile, its host work
      if save:
        with clock('checkpoint'):
          resume.save(checkpoint, loop, history, best)
      profile.after(at.step)
  finally:
    beside.close()
    profile.close()
  record.close()
  if checkpoint is not None:
    with clock('checkpoint'):
      checkpoint.wait()  # the last save, written while the run scored
  clock.merge({'compile': loop.compile_seconds, 'train': loop.train_seconds})
  stats = dict(loop.stats(), **(stats or {}), seconds=clock.seconds)
  return Fitted(loop.params(), history, stats, best)


def fit_task(
  task,
  params,
  hyper,
  seeds,
  data,
  *,
  evaluate=None,
  eval_at_start=False,
  log=print,
  name='',
  stop_on_divergence=None,
  **loop_kw,
):
  """S configurations of any task (the window scorer's, a benchmark's)
  trained by `drive`: an engine.Loop of (task, stacked params, [S] hyper,
  S seeds, data) and loop_kw (num_examples, epochs, steps_per_epoch,
  eval_every, steps_per_call, compiler_options); evaluate: fn(stacked
  params) -> dict, or None. Returns `drive`'s Fitted."""
  loop = engine.Loop(task, params, hyper, seeds, data, **loop_kw)
  return drive(
    loop,
    evaluate,
    eval_at_start=eval_at_start,
    log=log,
    name=name,
    stop_on_divergence=stop_on_divergence,
  )


class Record:
  """Where `drive` keeps each finished evaluation row: the history, the
  best-dev keeper, metrics.jsonl (`MetricsFile`) and the TensorBoard
  streams (or None)."""

  def __init__(self, history, best, ensemble, metrics, streams, loop, clock):
    self.history, self.best, self.ensemble = history, best, ensemble
    self.metrics, self.streams = metrics, streams
    self.loop, self.clock = loop, clock

  def keep(self, row, params):
    self.history.append(row)
    if self.best is not None:
      self.best.offer(one_model_row(row), one_model(params, self.ensemble))
    self.metrics.write(row)
    if self.streams:
      loop = self.loop
      seconds = dict(
        self.clock.seconds,
        compile=loop.compile_seconds,
        train=loop.train_seconds,
      )
      self.streams.write(row, params, loop, seconds)

  def close(self):
    self.metrics.close()
    if self.streams:
      self.streams.close()


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


def one_model_row(row):
  """An evaluation row of a stack as one model's (its first's) row."""
  out = dict(row)
  for key in ('dev', 'train'):
    if key in out:
      out[key] = out[key][0]
  if out.get('train_loss') is not None:
    out['train_loss'] = out['train_loss'][0]
  return out


def is_stack(params):
  """Whether stacked params hold more than one configuration."""
  return params['L'].shape[0] > 1


class Beside:
  """One evaluation at a time, run in a thread beside the loop's next
  compiled call: its host work (decoding, conlleval, the unseen entities)
  and its device work are queued while the device trains. `drive` waits
  for it at the next boundary, or at once before a checkpoint (which holds
  the history), at the end and while profiling."""

  def __init__(self):
    self.pool = concurrent.futures.ThreadPoolExecutor(1, 'evaluation')
    self.running = None

  def start(self, fn, *kept):
    """Starts fn() (after any evaluation still running); `kept` comes back
    with its result."""
    if self.running is not None:
      raise RuntimeError('an evaluation is still running: wait() first')
    self.running = (self.pool.submit(fn), kept)

  def wait(self):
    """(the running evaluation's result, *kept), or None."""
    if self.running is None:
      return None
    future, kept = self.running
    self.running = None
    return (future.result(), *kept)

  def close(self):
    self.pool.shutdown(wait=True, cancel_futures=True)


PROFILE_STEPS = 5  # traced before and after the first evaluation


class Profile:
  """A jax.profiler trace into `directory` (None: none) of a Loop's
  PROFILE_STEPS steps before its first evaluation, the evaluation, and the
  PROFILE_STEPS steps after, with what the host does between calls
  (evaluation, logging, metrics, checkpoints): the loop's calls end there
  too (`stops`; where calls end changes no number), so a trace of a long
  run stays small. TensorBoard's profile plugin reads its .xplane.pb,
  ui.perfetto.dev its .trace.json.gz."""

  def __init__(self, directory, loop, steps=PROFILE_STEPS):
    self.directory, self.loop, self.tracing = directory, loop, False
    if directory is None:
      return
    every = loop.eval_every
    first = min(loop.total_steps, (loop.step // every + 1) * every)
    self.start = max(loop.step, first - steps)
    self.end = min(loop.total_steps, first + steps)
    loop.stops.update((self.start, self.end))
    self.after(loop.step)

  def after(self, step):
    """At a boundary of `step`: starts the trace at the window's first
    step, stops it (the device's work done) at its last."""
    if self.directory is None:
      return
    if not self.tracing and step >= self.start:
      jax.profiler.start_trace(str(self.directory))
      self.tracing = True
    elif self.tracing and step >= self.end:
      self.close()

  def close(self):
    if self.tracing:
      jax.block_until_ready(self.loop.state)
      jax.profiler.stop_trace()
    self.tracing, self.directory = False, None
