"""engine.Loop, the compiled loop a caller steps: where its calls stop
(evaluation and checkpoint boundaries) changes no number, and it yields at
every boundary it was asked for."""

import re
import time

import jax
import numpy as np
import pytest

from research import setup as setup_lib
from research.data import dataset as dataset_lib
from research.formulas import model as model_lib
from research.formulas import objectives
from research.training import classifier
from research.training import driver
from research.training import engine
from tests.conftest import assert_same_numbers
from tests.conftest import write_corpus


@pytest.fixture(scope='module')
def small(tmp_path_factory):
  corpus = write_corpus(tmp_path_factory.mktemp('loop') / 'corpus')
  ds = dataset_lib.load_dataset(corpus, embeddings='random', log=lambda _: None)
  return ds, model_lib.ModelConfig(hidden=16)


LRS = np.float32([1e-2, 1e-3])


def _loop(ds, model_cfg, lrs=LRS, **kw):
  cfg = classifier.TrainConfig(batch_size=16)
  task = classifier.ClassifierTask(
    model_cfg, cfg, objectives.get(cfg.objective)
  )
  data = classifier.device_data(ds.windows['train'])
  params = engine.stack(
    [setup_lib.init_params(ds, model_cfg, s) for s in (0, 1)]
  )
  return engine.Loop(
    task,
    params,
    engine.Hyper(lrs, [0.0, 1e-4]),
    [0, 1],
    data,
    num_examples=len(ds.windows['train']),
    epochs=2,
    **kw,
  )


def test_where_the_calls_stop_changes_no_number(small):
  """Bit for bit on a CPU; on a GPU to its atomics' rounding
  (`assert_same_numbers`)."""
  ds, model_cfg = small
  one = _loop(ds, model_cfg)  # one call per epoch
  many = _loop(ds, model_cfg, eval_every=3, save_every=5, steps_per_call=2)
  for loop in (one, many):
    loop.compile()
    boundaries = list(loop)
  assert len(boundaries) > 2 * len(list(_loop(ds, model_cfg)))
  a, b = one.params(), many.params()
  for k in a:
    assert_same_numbers(a[k], b[k])
  assert_same_numbers(one.meter.last_SxM, many.meter.last_SxM)


def test_lr_decay_trains_each_epoch_at_its_own_rate(small):
  """A decayed run equals its epochs run one by one at constant rates:
  epoch 1 resumed from epoch 0's state at lr * float32(1 / (1 + rho))."""
  ds, model_cfg = small
  rho = 0.5
  decayed = _loop(ds, model_cfg, lr_decay=rho)
  first = _loop(ds, model_cfg)
  second = _loop(ds, model_cfg, lrs=LRS * np.float32(1 / (1 + rho)))
  for loop in (decayed, first, second):
    loop.compile()
  list(decayed)
  for at in first:
    if at.step == first.spe:
      break
  second.resume_at(first.spe, first.state)
  list(second)
  constant = _loop(ds, model_cfg)
  constant.compile()
  list(constant)
  a, b, c = decayed.params(), second.params(), constant.params()
  for k in a:
    assert_same_numbers(a[k], b[k])
  assert not np.allclose(a['W'], c['W'], rtol=0, atol=1e-6)


def test_it_yields_at_every_evaluation_and_checkpoint(small):
  ds, model_cfg = small
  loop = _loop(ds, model_cfg, eval_every=3, save_every=5, steps_per_call=2)
  loop.compile()
  at = list(loop)
  steps = [b.step for b in at]
  total = loop.total_steps
  assert steps == sorted(set(steps)) and steps[-1] == total
  assert [b.step for b in at if b.evaluate] == [
    s for s in steps if s % 3 == 0 or s == total
  ]
  assert [b.step for b in at if b.save] == [
    s for s in steps if s % 5 == 0 or s == total
  ]
  assert all(b.step - a.step <= 2 for a, b in zip(at, at[1:]))
  assert at[-1].done and not any(b.done for b in at[:-1])


def test_an_evaluation_runs_beside_the_next_call(small):
  """drive starts each evaluation (but the last) and goes on to the next
  compiled call: an evaluation that waits for the loop to move on
  finishes, and each row still holds its own step's scores and params."""
  ds, model_cfg = small
  loop = _loop(ds, model_cfg, eval_every=2, steps_per_call=1)
  seen = []

  def evaluate(params):
    at = 2 * (len(seen) + 1)  # its row's step (the loop may be past it)
    deadline = time.monotonic() + 20
    while loop.step == at < loop.total_steps and time.monotonic() < deadline:
      time.sleep(0.005)  # inline, the loop would never move on
    assert loop.step > at or at == loop.total_steps, 'the loop waited'
    seen.append((at, loop.step))
    norm = float(np.linalg.norm(np.asarray(params['W'][0])))
    return {'dev': [{'f1': float(at), 'norm': norm}]}

  fitted = driver.drive(loop, evaluate)
  rows = [(r['step'], r['dev'][0]['f1']) for r in fitted.history]
  assert rows == [(s, float(s)) for s in range(2, loop.total_steps + 1, 2)]
  inline = _loop(ds, model_cfg, eval_every=2, steps_per_call=1)
  inline.compile()
  for at in inline:
    if at.step == 2:
      break
  assert fitted.history[0]['dev'][0]['norm'] == float(
    np.linalg.norm(np.asarray(inline.params()['W'][0]))
  )


def test_a_profile_traces_the_steps_around_the_first_evaluation(
  small, monkeypatch, tmp_path
):
  """--profile's window: the calls end PROFILE_STEPS steps before and
  after the first evaluation, which is traced in between."""
  ds, model_cfg = small
  loop = _loop(ds, model_cfg)  # one call per epoch, unless told
  seen = []
  monkeypatch.setattr(
    jax.profiler, 'start_trace', lambda d: seen.append(('start', loop.step))
  )
  monkeypatch.setattr(
    jax.profiler, 'stop_trace', lambda: seen.append(('stop', loop.step))
  )

  def evaluate(params):
    seen.append(('evaluate', loop.step))
    return {'dev': [{'f1': 0.0}]}

  driver.drive(loop, evaluate, profile_dir=tmp_path)
  k, spe = driver.PROFILE_STEPS, loop.spe
  assert seen == [
    ('start', spe - k), ('evaluate', spe), ('stop', spe + k),
    ('evaluate', 2 * spe),
  ]  # fmt: skip


def test_the_meter_gives_each_configuration_its_mean_since_the_last_row(
  small,
):
  ds, model_cfg = small
  loop = _loop(ds, model_cfg, eval_every=4, steps_per_call=4)
  loop.compile()
  for at in loop:
    if at.evaluate:
      means = loop.meter.take()['train_loss']
      assert len(means) == 2 and all(np.isfinite(means))
  assert loop.meter.means()['train_loss'] is None  # nothing since the last


def _ops_on_tables(ds, model_cfg, S, V):
  """The HLO ops of the compiled step (S stacked configurations, a
  vocabulary of V rows) whose result is a whole table: [.., V, ..]."""
  cfg = classifier.TrainConfig(batch_size=16)
  inits = []
  for s in range(S):
    p = setup_lib.init_params(ds, model_cfg, s)
    p['L'] = np.zeros((V, p['L'].shape[1]), np.float32)
    inits.append(p)
  text = (
    engine.lower(
      classifier.ClassifierTask(model_cfg, cfg, objectives.get(cfg.objective)),
      engine.stack(inits),
      engine.Hyper([1e-3] * S, [0.0] * S),
      list(range(S)),
      classifier.device_data(ds.windows['train']),
      num_examples=len(ds.windows['train']),
      max_steps=4,
    )
    .compile()
    .as_text()
  )
  ops = set()
  for line in text.splitlines():
    m = re.search(r'= \w+\[([\d,]*)\][^ ]* ([\w-]+)\(', line)
    if m and str(V) in m.group(1).split(','):
      ops.add(m.group(2))
  return ops


@pytest.mark.parametrize('S,mode', [(1, 'map'), (3, 'vmap')])
def test_a_step_updates_the_tables_in_place(small, monkeypatch, S, mode):
  """No op of the step makes a new whole table (a copy, a slice of the
  stack, a broadcast): the sparse row updates scatter into the tables in
  place, so a step's cost does not grow with the vocabulary. (XLA's
  cost_analysis cannot show it: it counts a scatter's whole operand as
  bytes accessed even when the scatter is done in place.) A CPU's 'map' of
  several configurations slices each one's tables once per compiled call,
  not per step: not checked here."""
  monkeypatch.setenv('NER_STACK_MODE', mode)
  ds, model_cfg = small
  V = 50021  # a size no other array of the step has
  copies = {'copy', 'dynamic-slice', 'dynamic-update-slice', 'broadcast'}
  assert not _ops_on_tables(ds, model_cfg, S, V) & copies
