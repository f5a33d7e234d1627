"""The one objective registry (research.formulas.objectives): names, levels,
look-ups, and each record's loss and hand-derived gradient agreeing on J."""

import jax.numpy as jnp
import numpy as np
import pytest

from research.formulas import crf
from research.formulas import losses
from research.formulas import objectives


def test_names_and_levels():
  # The decks' and the sentence-level ones, first; more may be registered.
  assert objectives.names()[:2] == ('xent', 'max_margin')
  assert {'crf', 'struct_margin'} <= set(objectives.names('sentence'))
  assert set(objectives.names()) == set(objectives.names('window')) | set(
    objectives.names('sentence')
  )
  assert objectives.SCORER_NAMES == ('margin', 'logistic')
  for name, objective in objectives.REGISTRY.items():
    assert objective.name == name and objective.level in objectives.LEVELS
    assert objective.sentence_level == (name in objectives.names('sentence'))
    assert objective.log_probs == (name == 'xent')
    assert objective.doc


def test_get_refuses_unknown_names_and_wrong_levels():
  assert objectives.get('crf') is objectives.REGISTRY['crf']
  assert objectives.get('xent', 'window').loss is losses.cross_entropy
  with pytest.raises(ValueError, match=', '.join(objectives.names())):
    objectives.get('hinge')
  window = ', '.join(objectives.names('window'))
  with pytest.raises(ValueError, match=f'window-level.*{window}$'):
    objectives.get('crf', 'window')
  with pytest.raises(ValueError, match='margin, logistic'):
    objectives.get_scorer('xent')
  assert objectives.get('struct_margin').sentence_level
  assert not objectives.get('max_margin').sentence_level
  assert objectives.records('window') == tuple(
    objectives.REGISTRY[n] for n in objectives.names('window')
  )


def test_window_level_grad_returns_the_loss():
  rng = np.random.default_rng(0)
  f_NxC = jnp.asarray(rng.normal(size=(5, 4)), jnp.float32)
  y_N = jnp.asarray(rng.integers(0, 4, 5))
  for name in objectives.names('window'):
    objective = objectives.get(name)
    J_N, delta_NxC = objective.grad(f_NxC, y_N)
    np.testing.assert_allclose(J_N, objective.loss(f_NxC, y_N), rtol=1e-5)
    assert delta_NxC.shape == f_NxC.shape


def test_sentence_level_grad_returns_the_loss():
  rng = np.random.default_rng(1)
  f_BxTxC = jnp.asarray(rng.normal(size=(2, 4, 3)), jnp.float32)
  tags_BxT = jnp.asarray(rng.integers(0, 3, (2, 4)))
  mask_BxT = jnp.array([[True] * 4, [True, True, False, False]])
  starts_BxT = jnp.array([[True, False, True, False], [True] + [False] * 3])
  trans = crf.Transitions(
    *(jnp.asarray(rng.normal(size=s), jnp.float32) for s in [(3, 3), 3, 3])
  )
  args = (f_BxTxC, tags_BxT, mask_BxT, starts_BxT, trans)
  for name in objectives.names('sentence'):
    objective = objectives.get(name)
    J_B, df, _ = objective.grad(*args)
    np.testing.assert_allclose(J_B, objective.loss(*args), rtol=1e-5)
    assert df.shape == f_BxTxC.shape
