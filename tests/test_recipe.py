"""docs/design.md's recipe for a new objective, followed in this process: a
squared hinge (a loss and its hand-derived gradient, registered) trains,
sweeps and is gradient-checked with no other edit; its gradient written
wrong fails the check."""

import dataclasses

import jax
import jax.numpy as jnp
import pytest

from research import setup as setup_lib
from research.data import dataset as dataset_lib
from research.formulas import derivations
from research.formulas import model as model_lib
from research.formulas import objectives
from research.studies import objective_l2
from research.training import classifier
from research.training import engine
from research.training import facade as training

NAME = 'squared_hinge'


def squared_hinge(f_NxC, y_N):
  """Squared multiclass hinge J = max(0, 1 + max_{c != y} f_c - f_y)^2."""
  is_gold = jax.nn.one_hot(y_N, f_NxC.shape[1], dtype=bool)
  f_y = jnp.sum(jnp.where(is_gold, f_NxC, 0.0), axis=1)
  f_other = jnp.max(jnp.where(is_gold, -jnp.inf, f_NxC), axis=1)
  return jax.nn.relu(1.0 + f_other - f_y) ** 2


def squared_hinge_delta(f_NxC, y_N, factor=2.0):
  """J = t^2 for t = 1 + f_c* - f_y > 0 (c* the best wrong class), else 0:
  dJ/df = 2t at c*, -2t at y, 0 elsewhere (ties of c* share it).

  Returns (J_N, delta_NxC)."""
  is_gold = jax.nn.one_hot(y_N, f_NxC.shape[1], dtype=bool)
  f_y = jnp.sum(jnp.where(is_gold, f_NxC, 0.0), axis=1)
  f_wrong = jnp.where(is_gold, -jnp.inf, f_NxC)
  f_other = jnp.max(f_wrong, axis=1)
  t = jax.nn.relu(1.0 + f_other - f_y)
  is_max = (f_wrong == f_other[:, None]) & ~is_gold
  share = is_max / jnp.maximum(jnp.sum(is_max, axis=1), 1)[:, None]
  delta = factor * t[:, None] * (share - is_gold.astype(f_NxC.dtype))
  return t**2, delta


RECORD = objectives.Objective(
  NAME,
  'window',
  squared_hinge,
  squared_hinge_delta,
  False,
  'squared hinge J = max(0, 1 + max_{c != y} f_c - f_y)^2',
  kinks='hinge',
)


@pytest.fixture
def registered(monkeypatch):
  """The recipe's one registration (undone after the test)."""
  monkeypatch.setattr(objectives, 'REGISTRY', dict(objectives.REGISTRY))
  return objectives.register(RECORD)


@pytest.fixture(scope='module')
def ds(tmp_path_factory):
  from tests.conftest import write_corpus  # noqa: PLC0415

  corpus = write_corpus(tmp_path_factory.mktemp('recipe') / 'corpus')
  return dataset_lib.load_dataset(
    corpus, embeddings='random', log=lambda _: None
  )


def test_a_registered_objective_trains_sweeps_and_is_described(registered, ds):
  assert NAME in objectives.names('window')
  assert RECORD.doc in objectives.describe()  # the flags' help texts
  model_cfg = model_lib.ModelConfig(hidden=16)
  cfg = classifier.TrainConfig(objective=NAME)
  trained = training.train(
    setup_lib.resolve(ds, model_cfg, cfg),
    engine.Hyper(1e-2, 0.0),
    epochs=3,
    log=lambda _: None,
  )
  assert trained.result['dev']['f1'] > 50, trained.result['dev']
  sweep = objective_l2.run(
    ds, model_cfg, cfg, ['xent', NAME], [0.0, 1e-4], [0],
    lr=1e-2, epochs=2, log=lambda _: None,
  )  # fmt: skip
  got = {(r['objective'], r['l2']) for r in sweep['results']}
  assert got == {(o, l2) for o in ('xent', NAME) for l2 in (0.0, 1e-4)}
  assert NAME in sweep['best_l2']


def _rows(select):
  return derivations.check_all(select=lambda f: NAME in f and select(f))


def test_a_registered_objective_is_gradient_checked(registered):
  rows = _rows(lambda f: True)
  formulas = {f for f, _ in rows}
  # The classifiers' gradients, the full objective, the training step's,
  # and the sentence task's (summed over words).
  for prefix in ('softmax/', 'objective/', 'batch_grads/', 'sentence_batch'):
    assert any(f.startswith(prefix) for f in formulas), (prefix, formulas)
  assert rows and all(diff.ok for _, diff in rows), [
    (f, d) for f, d in rows if not d.ok
  ]


def test_its_wrong_gradient_fails_the_check(registered, monkeypatch):
  """The factor 2 of d(t^2)/dt forgotten: the check fails."""
  wrong = dataclasses.replace(
    RECORD, grad=lambda f, y: squared_hinge_delta(f, y, factor=1.0)
  )
  monkeypatch.setitem(objectives.REGISTRY, NAME, wrong)
  rows = _rows(lambda f: f.startswith('softmax/'))
  assert rows and not all(diff.ok for _, diff in rows)
